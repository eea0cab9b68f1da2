"""Running sums on the device (sum, sum of squares, count: mergeable) and the listener that
turns one instrumented pass into them. Nothing here reads a value back to the host."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .instrument import BRANCH, SKIP

__all__ = ["Collector", "Sums", "per_sample", "units"]

_TINY = 1e-30


def units(t: Tensor) -> Tensor:
    """``t`` as rows of feature vectors, fp32: one per token for ``[N, T, D]``, one per sample
    for other batched tensors, a single row for scalars and vectors."""
    t = t.detach().float()
    if t.dim() == 3:
        return t.reshape(-1, t.shape[-1])
    if t.dim() >= 2:
        return t.reshape(t.shape[0], -1)
    return t.reshape(1, -1)


def per_sample(t: Tensor) -> Tensor:
    """``t`` as one row per slice along its first dimension (the sample), fp32."""
    t = t.detach().float()
    return t.reshape(t.shape[0], -1) if t.dim() >= 1 else t.reshape(1, 1)


def _cos(a: Tensor, b: Tensor, na: Tensor, nb: Tensor) -> Tensor:
    return (a * b).sum(1) / (na * nb).clamp_min(_TINY)


class Sums:
    """Per key: the sum, the sum of squares and the count of values added (device tensors)."""

    def __init__(self) -> None:
        self.v: dict[Any, list[Any]] = {}

    def add(self, key: Any, x: Tensor, weight: Tensor | None = None) -> None:
        x = x.detach().float().reshape(-1)
        if weight is None:
            part = [x.sum(), x.square().sum(), float(x.numel())]
        else:
            w = weight.float().reshape(-1)
            x = torch.where(w > 0, x, torch.zeros_like(x))
            part = [(x * w).sum(), (x.square() * w).sum(), w.sum()]
        self._merge(key, part)

    def add_matrix(self, key: Any, total: Tensor, count: Tensor) -> None:
        self._merge(key, [total, total.new_zeros(()), count])

    def _merge(self, key: Any, part: list[Any]) -> None:
        old = self.v.get(key)
        self.v[key] = part if old is None else [a + b for a, b in zip(old, part)]

    def merge(self, other: Sums) -> None:
        for key, part in other.v.items():
            self._merge(key, part)

    def host(self) -> dict[Any, tuple[Any, Any, Any]]:
        """Every sum copied to the host at once: key -> (sum, sum of squares, count)."""
        flat: list[Tensor] = []
        layout = []
        for key, (s, q, c) in self.v.items():
            parts = [s, q, c if isinstance(c, Tensor) else s.new_tensor(c)]
            layout.append((key, [p.shape for p in parts]))
            flat += [p.reshape(-1).double() for p in parts]
        if not flat:
            return {}
        values = torch.cat([f.to(flat[0].device) for f in flat]).cpu()
        out: dict[Any, tuple[Any, Any, Any]] = {}
        at = 0
        for key, shapes in layout:
            got = []
            for shape in shapes:
                n = int(torch.Size(shape).numel())
                got.append(values[at:at + n].reshape(shape))
                at += n
            out[key] = (got[0], got[1], got[2])
        return out


class Collector:
    """The listener for one pass: statistics keyed by block name into ``sums``."""

    def __init__(self, names: list[str], streams: list[list[int]],
                 layers: list[tuple[str, list[int], int | None]], sums: Sums):
        self.names = names
        self.streams = streams
        self.layers = layers
        self.sums = sums
        self.skips: dict[int, Tensor] = {}
        self.outs: dict[int, Tensor] = {}
        self.nodes: dict[int, Tensor] = {}
        self.branch: dict[int, Tensor] = {}
        self.delta_norm: dict[int, Tensor] = {}
        self.inputs: dict[tuple[int, str], Tensor] = {}

    # -- forward --------------------------------------------------------------------------
    def joined(self, i: int, s: Tensor, b: Tensor, y: Tensor) -> None:
        name, add = self.names[i], self.sums.add
        if s.shape != y.shape or b.shape != y.shape:
            s, b = torch.broadcast_to(s, y.shape), torch.broadcast_to(b, y.shape)
        S, B, Y = units(s), units(b), units(y)
        ns, nb, ny = S.norm(dim=1), B.norm(dim=1), Y.norm(dim=1)
        valid = (ns > 0).float()
        add((name, "update_ratio"), nb / ns.clamp_min(_TINY), valid)
        add((name, "cos_branch_skip"), _cos(B, S, nb, ns), valid)
        add((name, "block_influence"), 1 - _cos(S, Y, ns, ny), valid * (ny > 0).float())
        add((name, "branch_values"), B)
        add((name, "skip_values"), S)
        self.skips[i] = s.detach()
        self.outs[i] = y.detach()

    def node(self, node_id: int, out: Tensor) -> None:
        self.nodes[node_id] = out.detach()

    def finish_forward(self) -> None:
        """Stream-level statistics: angular distances between states, influence per layer."""
        for sid, idx in enumerate(self.streams):
            if all(i in self.skips for i in idx):
                self._angular(sid, [self.skips[i] for i in idx] + [self.outs[idx[-1]]])
        for name, idx, out in self.layers:
            if out is None or idx[0] not in self.skips or out not in self.nodes:
                continue
            x, y = self.skips[idx[0]], self.nodes[out]
            if x.shape == y.shape:
                X, Y = units(x), units(y)
                self.sums.add(("layer", name), 1 - _cos(X, Y, X.norm(dim=1), Y.norm(dim=1)))
        self.nodes.clear()

    def _angular(self, sid: int, states: list[Tensor]) -> None:
        m = len(states)
        total = states[0].new_zeros((m, m), dtype=torch.float32)
        count = torch.zeros_like(total)
        groups: dict[torch.Size, list[int]] = {}
        for k, st in enumerate(states):
            groups.setdefault(st.shape, []).append(k)
        for shape, ks in groups.items():
            X = torch.stack([units(states[k]) for k in ks])
            X = X / X.norm(dim=2, keepdim=True).clamp_min(_TINY)
            cos = torch.einsum("iud,jud->iju", X, X).clamp(-1, 1)
            idx = torch.tensor(ks, device=total.device)
            grid = (idx[:, None], idx[None, :])
            angle = torch.arccos(cos) / torch.pi
            angle = angle * (1 - torch.eye(len(ks), device=angle.device))[:, :, None]  # 0 on the diagonal
            total = total.index_put(grid, angle.sum(2))
            count = count.index_put(grid, torch.full_like(cos[:, :, 0], float(cos.shape[2])))
        self.sums.add_matrix(("angular", sid), total, count)

    # -- backward -------------------------------------------------------------------------
    def delta(self, i: int, grad: Tensor, b: Tensor) -> None:
        G, B = per_sample(grad), per_sample(b)
        dn = G.norm(dim=1)
        self.sums.add((self.names[i], "grad_norm"), dn)
        self.sums.add((self.names[i], "lesion_first_order"), -(B * G).sum(1))
        self.delta_norm[i] = dn
        self.branch[i] = b

    def entered(self, i: int, role: str, grad: Tensor) -> None:
        key = (i, role)
        g = grad.detach().float()
        self.inputs[key] = g if key not in self.inputs else self.inputs[key] + g

    def finish_backward(self) -> None:
        """Gains and the iterative-inference cosine, once every gradient has arrived."""
        for i, dn in self.delta_norm.items():
            name = self.names[i]
            parts = [self.inputs.get((i, SKIP)), self.inputs.get((i, BRANCH))]
            for role, g in zip((SKIP, BRANCH), parts):
                if g is not None and g.dim() and g.shape[0] == dn.shape[0]:
                    self.sums.add((name, f"{role}_gain"), per_sample(g).norm(dim=1) / dn.clamp_min(_TINY),
                                  (dn > 0).float())
            b = self.branch[i]
            if parts[0] is not None and parts[1] is not None:
                gx = parts[0] + parts[1]
                if gx.shape == b.shape:
                    B, X = per_sample(b), per_sample(gx)
                    self.sums.add((name, "iterative_cos"), _cos(B, X, B.norm(dim=1), X.norm(dim=1)))
        self.delta_norm.clear()
        self.inputs.clear()
        self.branch.clear()
