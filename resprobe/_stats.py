"""Running sums on the device (sum, sum of squares, count: mergeable) and the listener that
turns one instrumented pass into them. Nothing here reads a value back to the host."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .instrument import BRANCH, SKIP

__all__ = [
    "BACKWARD",
    "FORWARD",
    "GAINS",
    "VALUES",
    "Collector",
    "Sums",
    "UNITS",
    "block_numbers",
    "mean",
    "per_sample",
    "significant",
    "std",
    "token_mask",
    "units",
]

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


def token_mask(mask: Tensor) -> Tensor:
    """An attention mask ``[N, T]`` as float weights, 1 on real tokens and 0 on padding: nonzero
    (or True) keeps a position (the Hugging Face convention); an additive float mask (0 keeps,
    negative drops) is read the other way. Computed on the device, nothing read back."""
    m = mask.detach()
    if m.dtype == torch.bool:
        return m.float()
    m = m.float()
    additive = (m < 0).any() | (m == 0).all()  # all zeros: an additive mask with no padding
    return torch.where(additive, m == 0, m != 0).float()


def per_sample(t: Tensor) -> Tensor:
    """``t`` as one row per slice along its first dimension (the sample), fp32."""
    t = t.detach().float()
    return t.reshape(t.shape[0], -1) if t.dim() >= 1 else t.reshape(1, 1)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise dot products: on an accelerator a batched matmul (no full-size temporary); on
    the CPU ``vecdot``, several times faster there than a matmul of ``[N, 1, D]`` by ``[N, D, 1]``."""
    if a.device.type == "cpu":
        out: Tensor = torch.linalg.vecdot(a, b)
        return out
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).reshape(-1)


def _norm(a: Tensor) -> Tensor:
    norm: Tensor = torch.linalg.vector_norm(a, dim=1)
    return norm


def _cos(a: Tensor, b: Tensor, na: Tensor, nb: Tensor) -> Tensor:
    return _dot(a, b) / (na * nb).clamp_min(_TINY)


class Sums:
    """Per key: sums, sums of squares and counts of the values added (device tensors, one
    entry per row of a ``[K, n]`` value matrix). Adding and merging only queue the parts; they
    are reduced and copied to the host together, once, by ``host()``."""

    def __init__(self) -> None:
        self.v: dict[Any, list[list[Any]]] = {}

    def add(self, key: Any, x: Tensor, weight: Tensor | None = None, squares: Tensor | None = None) -> None:
        """Add values ``x`` (``[n]`` or ``[K, n]``), optionally weighted (0 drops a value);
        ``squares`` is their sum of squares when known already."""
        x = x.detach().double()  # float64 sums: the variance q/c - (s/c)^2 must not cancel
        x = x.reshape(1, -1) if x.dim() < 2 else x.reshape(x.shape[0], -1)
        if weight is None:
            sq = (x.square().sum(1) if squares is None else squares.reshape(-1).double())
            part = [x.sum(1), sq, float(x.shape[1])]
        else:
            w = weight.double().reshape(x.shape)
            x = torch.where(w > 0, x, torch.zeros_like(x))
            part = [(x * w).sum(1), (x.square() * w).sum(1), w.sum(1)]
        self.v.setdefault(key, []).append(part)

    def add_sums(self, key: Any, sums: Tensor, squares: Tensor, count: float | Tensor) -> None:
        """Add values already reduced to their sums and sums of squares (a tensor ``count``
        has the shape of ``sums``)."""
        self.v.setdefault(key, []).append([sums.detach().reshape(-1), squares.detach().reshape(-1), count])

    def add_matrix(self, key: Any, total: Tensor, count: Tensor) -> None:
        self.v.setdefault(key, []).append([total, total.new_zeros(()), count])

    def merge(self, other: Sums) -> None:
        for key, parts in other.v.items():
            self.v.setdefault(key, []).extend(parts)

    def host(self, reduce: Callable[[Tensor], None] | None = None) -> dict[Any, tuple[Any, Any, Any]]:
        """Every sum reduced and copied to the host at once: key -> (sums, squares, counts).
        ``reduce`` (e.g. an all-reduce over processes) sees the flat float64 tensor of every
        sum first, and may change it in place: one call for all keys."""
        flat: list[Tensor] = []
        layout = []
        # added up over processes: the same order on every one, whatever order the keys came in
        entries = list(self.v.items())
        if reduce is not None:
            entries.sort(key=lambda kv: str(kv[0]))
        for key, parts in entries:
            reduced = []
            for k in range(3):
                items = [p[k] for p in parts]
                ref = next((t for t in items if isinstance(t, Tensor)), None)
                if ref is None:
                    reduced.append(torch.tensor(float(sum(items)), dtype=torch.float64))
                    continue
                items = [t if isinstance(t, Tensor) else torch.full_like(parts[0][0], t) for t in items]
                reduced.append(torch.stack(items).sum(0) if len(items) > 1 else items[0])
            layout.append((key, [r.shape for r in reduced]))
            flat += [r.reshape(-1).double() for r in reduced]
        if not flat:
            return {}
        device = next((f.device for f in flat if f.device.type != "cpu"), flat[0].device)
        values = torch.cat([f.to(device) for f in flat])
        if reduce is not None:
            reduce(values)
        values = values.cpu()
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


FORWARD = ("update_ratio", "cos_branch_skip", "block_influence")
VALUES = ("branch_values", "skip_values")
UNITS = "units"
BACKWARD = ("grad_norm", "lesion_first_order")
GAINS = ("skip_gain", "branch_gain")


class Collector:
    """The listener for one pass: statistics keyed by block name into ``sums``. ``mask``
    (``[N, T]``, 1 on real tokens, 0 on padding; see ``token_mask``) gives every unit of a
    ``[N, T, D]`` (or sequence-first ``[T, N, D]``) tensor its weight: padding is left out."""

    def __init__(self, names: list[str], streams: list[list[int]],
                 layers: list[tuple[str, list[int], int | None]], sums: Sums, mask: Tensor | None = None):
        self.names = names
        self.mask = mask
        self.streams = streams
        self.layers = layers
        self.sums = sums
        self.skips: dict[int, Tensor] = {}
        self.outs: dict[int, Tensor] = {}
        self.nodes: dict[int, Tensor] = {}
        self.branch: dict[int, Tensor] = {}
        self.delta_norm: dict[int, Tensor] = {}
        self.deltas: dict[int, tuple[Tensor, Tensor | None]] = {}
        self.branch_norm: dict[int, Tensor] = {}
        self.ungated: set[int] = set()  # blocks whose input gradient cannot be split (see Instrument)
        self.inputs: dict[tuple[int, str], Tensor] = {}

    # -- padding ----------------------------------------------------------------------------
    def weights(self, t: Tensor) -> Tensor | None:
        """The weight of each row of ``units(t)`` under the mask, or None (every row counts):
        for ``[N, T, D]`` tensors whose first two dims are the mask's (or swapped)."""
        m = self.mask
        if m is None or t.dim() != 3:
            return None
        if t.shape[:2] == m.shape:
            return m.reshape(-1)
        if t.shape[1::-1] == m.shape:  # sequence-first
            return m.t().reshape(-1)
        return None

    def masked(self, t: Tensor) -> Tensor:
        """``t`` with its padding positions set to zero (for per-sample sums over positions)."""
        w = self.weights(t)
        if w is None:
            return t
        return torch.where(w.reshape(*t.shape[:2], 1) > 0, t, torch.zeros((), dtype=t.dtype, device=t.device))

    # -- forward --------------------------------------------------------------------------
    def joined(self, i: int, s: Tensor, b: Tensor, y: Tensor, plain: bool = False) -> None:
        """Forward statistics of one join. ``plain``: ``y = s + b`` exactly, so ``‖y‖`` and
        ``s·y`` follow from ``‖s‖``, ``‖b‖`` and ``s·b`` (two passes fewer over the tensors)."""
        name = self.names[i]
        if s.shape != y.shape or b.shape != y.shape:
            s, b = torch.broadcast_to(s, y.shape), torch.broadcast_to(b, y.shape)
            plain = False
        S, B = units(s), units(b)
        w = self.weights(y)
        ns, nb, sb = _norm(S), _norm(B), _dot(S, B)
        if plain:
            ny = (ns.square() + nb.square() + 2 * sb).clamp_min(0).sqrt()
            sy = ns.square() + sb
        else:
            Y = units(y)
            ny, sy = _norm(Y), _dot(S, Y)
        valid = (ns > 0).float() if w is None else (ns > 0).float() * w
        self.sums.add((name, FORWARD), torch.stack([nb / ns.clamp_min(_TINY), sb / (nb * ns).clamp_min(_TINY),
                                                    1 - sy / (ns * ny).clamp_min(_TINY)]),
                      torch.stack([valid, valid, valid * (ny > 0).float()]))
        self._values(name, S, B, ns, nb, w)
        if b.dim() >= 2:  # per-sample norm of the branch, for the backward statistics
            self.branch_norm[i] = _drop(nb, w).reshape(b.shape[0], -1).square().sum(1).sqrt()
        self.skips[i] = s.detach()
        self.outs[i] = y.detach()

    def _values(self, name: str, S: Tensor, B: Tensor, ns: Tensor, nb: Tensor, w: Tensor | None) -> None:
        """Sums over every element of the real units (variance ratio), and the units counted."""
        f64 = torch.float64
        zero = torch.zeros(1, dtype=f64, device=S.device)
        if w is None:
            self.sums.add_sums((name, VALUES), torch.stack([B.sum(dtype=f64), S.sum(dtype=f64)]),
                               torch.stack([nb.double().square().sum(), ns.double().square().sum()]),
                               float(B.numel()))
            self.sums.add_sums((name, UNITS), zero, zero, float(S.shape[0]))
            return
        keep = w[:, None] > 0
        sums = torch.stack([torch.where(keep, B, 0).sum(dtype=f64), torch.where(keep, S, 0).sum(dtype=f64)])
        squares = torch.stack([_drop(nb, w).double().square().sum(), _drop(ns, w).double().square().sum()])
        count = w.double().sum()
        self.sums.add_sums((name, VALUES), sums, squares, (count * B.shape[1]).expand(2))
        self.sums.add_sums((name, UNITS), zero, zero, count.reshape(1))

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
                self.sums.add(("layer", name), 1 - _cos(X, Y, _norm(X), _norm(Y)), self.weights(x))
        self.nodes.clear()

    def _angular(self, sid: int, states: list[Tensor]) -> None:
        m = len(states)
        total = states[0].new_zeros((m, m), dtype=torch.float32)
        count = torch.zeros_like(total)
        groups: dict[torch.Size, list[int]] = {}
        for k, st in enumerate(states):
            groups.setdefault(st.shape, []).append(k)
        for ks in groups.values():
            w = self.weights(states[ks[0]])
            X = torch.stack([units(states[k]) for k in ks], dim=1)  # [units, m, features]
            gram = torch.bmm(X, X.transpose(1, 2))  # one pass over the states: every pair at once
            norms = gram.diagonal(dim1=1, dim2=2).clamp_min(0).sqrt()
            cos = (gram / (norms[:, :, None] * norms[:, None, :]).clamp_min(_TINY)).clamp(-1, 1)
            angle = torch.arccos(cos) / torch.pi
            angle = angle * (1 - torch.eye(len(ks), device=angle.device))  # 0 on the diagonal
            angle = _drop(angle, None if w is None else w[:, None, None]).sum(0)
            n: float | Tensor = float(X.shape[0]) if w is None else w.sum()
            lo, hi = ks[0], ks[-1] + 1
            if ks == list(range(lo, hi)):  # contiguous (the usual case): plain slices
                total[lo:hi, lo:hi] = angle
                count[lo:hi, lo:hi] = n
            else:
                for a, k in enumerate(ks):
                    for c, j in enumerate(ks):
                        total[k, j] = angle[a, c]
                        count[k, j] = n
        self.sums.add_matrix(("angular", sid), total, count)

    # -- backward -------------------------------------------------------------------------
    def delta(self, i: int, grad: Tensor, b: Tensor | None) -> None:
        """The gradient at block ``i``'s join; with its branch output ``b``, also ``b·δ`` (the
        first-order lesion estimate and, later, the iterative-inference cosine)."""
        G = per_sample(self.masked(grad))
        dn = _norm(G)
        self.delta_norm[i] = dn
        if b is None:  # no branch output kept: the second row counts nothing
            self.sums.add((self.names[i], BACKWARD), torch.stack([dn, torch.zeros_like(dn)]),
                          torch.stack([torch.ones_like(dn), torch.zeros_like(dn)]))
            self.deltas[i] = (grad, None)
            return
        bd = _dot(per_sample(self.masked(b)), G)
        self.sums.add((self.names[i], BACKWARD), torch.stack([dn, -bd]))
        self.deltas[i] = (grad, bd)
        self.branch[i] = b

    def entered(self, i: int, role: str, grad: Tensor) -> None:
        key = (i, role)
        g = grad.detach().float()
        self.inputs[key] = g if key not in self.inputs else self.inputs[key] + g

    def finish_backward(self) -> None:
        """Gains and the iterative-inference cosine, once every gradient has arrived."""
        for i in list(self.delta_norm):
            self.finish_block(i)
        for store in (self.delta_norm, self.deltas, self.inputs, self.branch, self.branch_norm):
            store.clear()

    def finish_block(self, i: int) -> None:
        """Block ``i``'s gains and iterative-inference cosine, once its gradients are in; what
        was kept for it is let go."""
        dn = self.delta_norm.pop(i)
        delta, bd = self.deltas.pop(i)
        b = self.branch.pop(i, None)
        nb = self.branch_norm.pop(i, None)
        gs, gb = self.inputs.pop((i, SKIP), None), self.inputs.pop((i, BRANCH), None)
        if i in self.ungated or gs is None or gb is None or not gs.dim() or gs.shape[0] != dn.shape[0] \
                or gb.shape[0] != dn.shape[0]:
            return
        S, R = per_sample(self.masked(gs)), per_sample(self.masked(gb))
        identity = _same(gs, delta)  # an identity skip hands the join's gradient on as it is
        ns, nr = dn if identity else _norm(S), _norm(R)
        self.sums.add((self.names[i], GAINS), torch.stack([ns, nr]) / dn.clamp_min(_TINY),
                      (dn > 0).float().expand(2, -1))
        if b is not None and bd is not None and gs.shape == gb.shape == b.shape:
            B = per_sample(self.masked(b))
            # cos(b, gs + gb) from dot products alone: no gradient-sized temporary
            dot = (bd if identity else _dot(B, S)) + _dot(B, R)
            gx = (ns.square() + nr.square() + 2 * _dot(S, R)).clamp_min(0).sqrt()
            nb = _norm(B) if nb is None or nb.shape != dn.shape else nb
            self.sums.add((self.names[i], "iterative_cos"), dot / (nb * gx).clamp_min(_TINY))


def _drop(x: Tensor, w: Tensor | None) -> Tensor:
    """``x`` with zero where the weight is 0 (NaN or inf there included)."""
    return x if w is None else torch.where(w > 0, x, torch.zeros((), dtype=x.dtype, device=x.device))


def _same(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors are the same values in the same memory (no comparison made)."""
    return a is b or (a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()
                      and a.dtype == b.dtype)


# -- host side: the numbers reported per block ----------------------------------------------
def _row(entry: tuple[Any, Any, Any] | None, k: int = 0) -> tuple[float, float, float] | None:
    if entry is None:
        return None
    s, q, c = (v.reshape(-1) for v in entry)
    row = (float(s[k]), float(q[min(k, q.numel() - 1)]), float(c[min(k, c.numel() - 1)]))
    return row if row[2] else None


def mean(entry: tuple[Any, Any, Any] | None, k: int = 0) -> float | None:
    row = _row(entry, k)
    return None if row is None else row[0] / row[2]


def std(entry: tuple[Any, Any, Any] | None, k: int = 0) -> float | None:
    row = _row(entry, k)
    if row is None:
        return None
    s, q, c = row
    return math.sqrt(max(q / c - (s / c) ** 2, 0.0))


def block_numbers(name: str, host: dict[Any, tuple[Any, Any, Any]], norms: tuple[float, float] | None,
                  settings: Any, samples: int) -> dict[str, Any]:
    def get(key: str) -> float | None:
        group = next((g for g in (FORWARD, BACKWARD, GAINS) if key in g), key)
        value = mean(host.get((name, group)), group.index(key) if isinstance(group, tuple) else 0)
        return None if value is None else significant(value)

    ratio, influence = get("update_ratio"), get("block_influence")
    values = host.get((name, VALUES))
    var_b, var_s = std(values, 0), std(values, 1)
    d: dict[str, Any] = {
        "samples": samples, "units": _count(host.get((name, UNITS))),
        "update_ratio": ratio, "update_ratio_std": _round(std(host.get((name, FORWARD)), 0)),
        "variance_ratio": None if var_b is None or not var_s else significant(var_b**2 / var_s**2),
        "cos_branch_skip": get("cos_branch_skip"), "block_influence": influence,
        "label": _label(ratio, influence, settings),
        "grad_norm": get("grad_norm"), "skip_gain": get("skip_gain"), "branch_gain": get("branch_gain"),
        "iterative_cos": get("iterative_cos"), "lesion_first_order": get("lesion_first_order"),
        "param_grad_norm": None, "param_norm": None, "grad_weight_ratio": None,
    }
    if norms is not None:
        g, w = norms
        d.update(param_grad_norm=significant(g), param_norm=significant(w),
                 grad_weight_ratio=significant(g / w) if w else None)
    return d


def _label(ratio: float | None, influence: float | None, settings: Any) -> str | None:
    """``idle`` (the update is under ``idle_ratio`` of the stream), ``refine`` (small and
    aligned) or ``rebuild``; see docs/metrics.md for the calibration."""
    if ratio is None or influence is None:
        return None
    if ratio < settings.idle_ratio:
        return "idle"
    return "refine" if ratio < settings.refine_ratio and influence < settings.refine_influence else "rebuild"


def _count(entry: tuple[Any, Any, Any] | None) -> int | None:
    """The units counted under a key (real token positions when a mask was used)."""
    return None if entry is None else round(float(entry[2].reshape(-1)[0]))


def _round(v: float | None) -> float | None:
    return None if v is None else significant(v)


def significant(v: float, digits: int = 8) -> float:
    """``v`` to ``digits`` significant digits: a gradient norm of 2e-6 keeps as many digits as
    an update ratio of 0.4 (rounding to decimal places would leave it 3, and 4e-9 none)."""
    return float(f"{v:.{digits}g}") if math.isfinite(v) else v
