"""Effective depth (Veit, Wilber & Belongie 2016): how the gradient divides among the paths of
different lengths through a residual stream. A stream of n blocks unrolls into 2^n paths; a
path of length k takes the branch at k joins and the skip at the others.

Three ways to the path-length profile, cheapest first: the one-pass ``estimate`` from the
measured gains (Poisson-binomial), the ``exact_profile`` (a stack of gradients indexed by path
length, propagated backwards block by block), and Veit's ``sample_profile`` (backward passes
with the gates set to one path pattern at a time).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import torch
from torch import Tensor, nn

from . import _distributed
from ._dataflow import Dataflow
from ._opclass import CONTRACTION
from .blocks import Block
from .blocks import by_stream as stream_blocks
from .data import Data, batch_size
from .errors import AnalysisError
from .graph import Graph
from .inputs import Inputs
from .instrument import Instrument, Mismatch
from .objective import Objective, choose_objective
from .session import ModuleTree, Session, Steps

__all__ = ["estimate", "exact_profile", "parametric_depth", "path_counts", "poisson_binomial",
           "sample_profile", "stream_blocks", "summary", "total_variation"]


# -- structure and the estimate (plain numbers) -------------------------------------------
def path_counts(n: int) -> list[float]:
    """``log10 C(n, k)`` for k = 0..n: how many of the 2^n paths have length k."""
    return [(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(10)
            for k in range(n + 1)]


def poisson_binomial(ps: list[float]) -> list[float]:
    """The distribution of the number of successes of independent trials with probabilities
    ``ps``, by the stable O(n²) recurrence ``q ← q·(1−p) + shift(q)·p`` (values stay in [0, 1])."""
    q = [1.0]
    for p in ps:
        nxt = [0.0] * (len(q) + 1)
        for k, v in enumerate(q):
            nxt[k] += v * (1 - p)
            nxt[k + 1] += v * p
        q = nxt
    return q


def estimate(skip_gains: list[float], branch_gains: list[float], kind: str = "magnitude") -> list[float]:
    """The path-length profile from the gains alone, assuming each block scales the gradient
    by its gain independently of the others.

    ``magnitude`` (Veit's view, what ``sample_profile`` measures): the summed gradient
    magnitude of all paths of length k, ``∝ e_k(g/a)``: Poisson-binomial with
    ``p_i = g_i / (a_i + g_i)``. ``net`` (what ``exact_profile`` measures): the norm of the
    summed gradient of those paths, ``‖G[k]‖``, assuming paths add like orthogonal vectors:
    ``∝ sqrt(e_k(g²/a²))``, from the Poisson-binomial with ``p_i = g_i² / (a_i² + g_i²)``."""
    pairs = list(zip(skip_gains, branch_gains))
    if kind == "magnitude":
        return poisson_binomial([g / (a + g) if a + g > 0 else 0.0 for a, g in pairs])
    if kind != "net":
        raise ValueError(f"kind must be 'magnitude' or 'net', not {kind!r}")
    energy = poisson_binomial([g * g / (a * a + g * g) if a or g else 0.0 for a, g in pairs])
    roots = [math.sqrt(v) for v in energy]
    total = sum(roots) or 1.0
    return [v / total for v in roots]


def summary(profile: list[float], coverage: float = 0.9, n: int | None = None) -> dict[str, Any]:
    """Mean and spread of a path-length profile (normalised here), its central ``coverage``
    window, and the share of all 2^n paths whose length lies in that window (``n``: the
    number of blocks, when the profile was cut short of it)."""
    total = sum(profile)
    if not math.isfinite(total) or total <= 0 or not all(math.isfinite(v) for v in profile):
        return {"mean": None, "std": None, "window": None, "path_share": None}
    p = [v / total for v in profile]
    n = len(p) - 1 if n is None else n
    mean = sum(k * v for k, v in enumerate(p))
    std = math.sqrt(max(sum((k - mean) ** 2 * v for k, v in enumerate(p)), 0.0))
    tail = (1 - coverage) / 2
    last = len(p) - 1
    lo = next(k for k in range(last + 1) if sum(p[: k + 1]) > tail)
    hi = next(k for k in range(last, -1, -1) if sum(p[k:]) > tail)
    logs = path_counts(n)
    share = sum(10 ** (logs[k] - n * math.log10(2)) for k in range(lo, hi + 1))
    return {"mean": round(mean, 6), "std": round(std, 6), "window": [lo, hi], "path_share": share}


def total_variation(p: list[float], q: list[float]) -> float:
    """Total-variation distance between two profiles (each normalised first)."""
    sp, sq = sum(p) or 1.0, sum(q) or 1.0
    size = max(len(p), len(q))
    pad = [v / sp for v in p] + [0.0] * (size - len(p)), [v / sq for v in q] + [0.0] * (size - len(q))
    return 0.5 * sum(abs(a - b) for a, b in zip(*pad))


def parametric_depth(graph: Graph) -> int:
    """The longest chain of weighted layers (convolutions, linear maps, matmuls with a weight:
    how ResNet depth is counted, norms excluded) from an input to an output of ``graph``."""
    flow = Dataflow(graph)
    longest = [0] * len(graph.nodes)
    for node in graph.nodes:
        before = max((longest[i] for i in flow.inputs[node.id]), default=0)
        layer = flow.parametric[node.id] and flow.kind[node.id] == CONTRACTION
        longest[node.id] = before + int(layer)
    return max((longest[i] for i in graph.outputs), default=max(longest, default=0))


# -- passes with handles on every gate ------------------------------------------------------
class _Handles:
    """Keeps the tensors of one pass the profile needs: gate outputs, join outputs, forks."""

    def __init__(self) -> None:
        self.gates: dict[tuple[int, str], list[Tensor]] = {}
        self.joins: dict[int, Tensor] = {}
        self.nodes: dict[int, Tensor] = {}

    def gated(self, i: int, role: str, out: Tensor) -> None:
        self.gates.setdefault((i, role), []).append(out)

    def joined(self, i: int, s: Tensor, b: Tensor, y: Tensor, plain: bool = False) -> None:
        self.joins[i] = y

    def delta(self, i: int, grad: Tensor, b: Tensor | None) -> None:
        pass

    def entered(self, i: int, role: str, grad: Tensor) -> None:
        pass

    def node(self, node_id: int, out: Tensor) -> None:
        self.nodes[node_id] = out


@dataclass
class _ForwardPass:
    """One instrumented forward pass the profiles take gradients from: the plan it followed,
    its handles on every gate, and its per-sample losses (with the objective they came from)."""

    plan: Instrument
    handles: _Handles
    losses: Tensor
    objective: Objective


class _Runner:
    """Instrumented passes of one model; ``session`` holds it (the profiles enter it; ``tree``:
    the model's module tree, when walked already)."""

    def __init__(self, model: nn.Module, tree: ModuleTree | None, graph: Graph, blocks: list[Block],
                 objective: Any, copy: bool, train: bool = False):
        self.session = Session(model, train=train, tree=tree)
        self.model, self.copy = self.session.model, copy
        self.plan = self._plan(graph, blocks)
        self.spec = objective
        self.objective: Objective | None = None
        self.mismatches: list[Mismatch] = []

    def _plan(self, graph: Graph, blocks: list[Block]) -> Instrument:
        residual = [b for b in blocks if b.is_residual]
        return Instrument(graph, residual, watch=tuple({b.fork for b in residual}), copy=self.copy)

    def run(self, inp: Inputs, targets: Any) -> _ForwardPass:
        """One pass on a batch (on the model's device), with autograd on. A model that records
        other ops with autograd on is captured again so, and its graph adopted."""
        with torch.enable_grad():
            got = self.session.follow(inp, self.plan, lambda plan: self._forward(plan, inp), self._plan,
                                      grad=True)
            self.plan = got.plan
            if got.result is None:
                m = self.mismatches[0]
                raise AnalysisError(f"the model took a different path than when it was captured (node "
                                    f"{m.node}: expected {m.expected}, got {m.got}); the path-length "
                                    "profile needs the captured path")
            out, handles = got.result
            if self.objective is None:
                self.objective = choose_objective(self.spec, out, inp, targets, self.model)
            losses = self.objective.losses(out, inp, targets)
        return _ForwardPass(self.plan, handles, losses, self.objective)

    def _forward(self, plan: Instrument, inp: Inputs) -> tuple[Any, _Handles] | None:
        """The output and the handles of one pass following ``plan`` (None: it left the graph)."""
        handles = _Handles()
        anchor = torch.zeros((), device=self.session.device, requires_grad=True)
        out, self.mismatches = self.session.instrumented(plan, inp, handles, anchor)
        return None if self.mismatches else (out, handles)


@contextmanager
def _held(model: nn.Module, train: bool = False) -> Iterator[tuple[nn.Module, ModuleTree]]:
    """``model`` held by a ``Session``, as its unwrapped model and module tree (for driving a
    ``_Runner`` by hand)."""
    with Session(model, train=train) as session:
        yield session.model, session.tree


def _vjp(out: Tensor, inputs: list[Tensor], grads: Tensor) -> Tensor | None:
    """Sum over ``inputs`` of the vector-Jacobian products of ``out`` with each slice of ``grads``."""
    if not inputs or not out.requires_grad:
        return None
    got = torch.autograd.grad([out], inputs, [grads.to(out.dtype)], retain_graph=True, allow_unused=True,
                              is_grads_batched=True)
    parts = [g for g in got if g is not None]
    if not parts:
        return None
    total = parts[0].float()
    for g in parts[1:]:
        total = total + g.float()
    return total


def _input_grad(p: _ForwardPass, i: int, fork: Tensor, total: Tensor) -> Tensor:
    """``∂total/∂fork`` for the input of block ``i``; when the fork is a leaf that takes no
    gradient (the model's own input), the sum over the gates that read it."""
    if fork.requires_grad:
        (g,) = torch.autograd.grad(total, [fork], retain_graph=True)
        return g.float()
    readers = p.handles.gates.get((i, "skip"), []) + p.handles.gates.get((i, "branch"), [])
    got = torch.autograd.grad(total, readers, retain_graph=True, allow_unused=True)
    join_skip = p.handles.gates[(i, "join-skip")][0]
    parts = []
    for r, g in zip(readers, got):
        if g is None:
            continue
        # a gradient at a gate's output comes before the gate's own backward scale: apply it
        scale = p.plan.skip_backward.get(i) if r is join_skip else None
        parts.append(g.float().reshape(fork.shape) * (1.0 if scale is None else scale))
    return torch.stack(parts).sum(0) if parts else torch.zeros(fork.shape, device=fork.device)


# -- the exact profile ------------------------------------------------------------------------
def _stack(p: _ForwardPass, chain: list[Block], total: Tensor, max_length: int,
           step: Callable[[], None] | None = None) -> tuple[Tensor, Tensor]:
    """``G[k]``, the gradient at the stream input through paths of length k (k <= max_length),
    and autograd's own gradient there, for one pass; ``step()`` after each block."""
    index = {b.name: k for k, b in enumerate(p.plan.blocks)}
    chain = [p.plan.blocks[index[b.name]] for b in chain]  # node ids of the graph the pass followed
    h = p.handles
    last = index[chain[-1].name]
    (d,) = torch.autograd.grad(total, [h.joins[last]], retain_graph=True)
    G = d.float().unsqueeze(0)
    for t in range(len(chain) - 1, -1, -1):
        i = index[chain[t].name]
        gs, gb = h.gates[(i, "join-skip")][0], h.gates[(i, "join-branch")][0]
        skip_in, branch_in = h.gates.get((i, "skip"), []), h.gates.get((i, "branch"), [])
        direct = any(x is gs for x in skip_in)  # an identity skip read directly: Aᵀ = I
        skip = G.reshape(G.shape[0], *gs.shape) if direct else _vjp(gs, skip_in, G)
        branch = _vjp(gb, branch_in, G[:max_length])
        fork = h.nodes[chain[t].fork]
        Gx = torch.zeros((min(G.shape[0] + 1, max_length + 1), *fork.shape), device=G.device)
        if skip is not None:
            Gx[: skip.shape[0]] += skip
        if branch is not None:
            Gx[1: 1 + branch.shape[0]] += branch
        if step is not None:
            step()
        if t == 0:
            return Gx, _input_grad(p, i, fork, total)
        prev = index[chain[t - 1].name]
        back = _vjp(fork, [h.joins[prev]], Gx)
        if back is None:
            raise AnalysisError(f"the input of block {chain[t].name!r} does not depend on the output of "
                                f"{chain[t - 1].name!r}; the stream is not a chain")
        G = back
    raise AssertionError("unreachable")


def exact_profile(model: nn.Module, graph: Graph, blocks: list[Block], data: Data, *,
                  objective: Any = None, max_length: int | None = None, train: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> dict[int, dict[str, Any]]:
    """Per stream: the net gradient at the stream input through paths of each length, exact
    for every length kept (all, or ``k <= max_length``). About n²/2 branch vector-Jacobian
    products per batch (~n/2 backward passes). ``norms[k]`` is the mean over samples of
    ``‖G[k]‖``; ``check`` is ``‖Σ_k G[k] − ∂L/∂x‖ / ‖∂L/∂x‖`` (0 up to rounding when no
    length was cut and every path from the stream input to the loss runs along the stream).
    ``truncated_at`` is K when lengths above K were cut (else None): then ``mean``, ``std`` and
    ``window`` describe the kept lengths only and do not compare with an uncut profile.
    ``progress(done, total)`` is called after each block of each stream, batch by batch."""
    chains = stream_blocks(blocks)
    sums: dict[int, Tensor] = {}
    checks: dict[int, float] = {}
    samples = 0
    step = Steps(progress, _distributed.share_size(data.batches) * sum(len(c) for c in chains.values()))
    runner = _Runner(model, None, graph, blocks, objective, copy=True, train=train)
    with runner.session as session:
        for inp, targets in _distributed.share(data, data.batches):  # torch.distributed: this process's
            p = runner.run(*session.on(inp, targets))
            total = p.losses.sum()
            samples += int(p.losses.shape[0])
            for sid, chain in chains.items():
                K = len(chain) if max_length is None else min(max_length, len(chain))
                stack, truth = _stack(p, chain, total, K, step)
                norms = stack.reshape(stack.shape[0], stack.shape[1], -1).norm(dim=2).sum(1)
                sums[sid] = norms if sid not in sums else sums[sid] + norms
                if len(chain) == K:
                    err = float((stack.sum(0) - truth).norm() / truth.norm().clamp_min(1e-30))
                    checks[sid] = max(checks.get(sid, 0.0), err)
    named: dict[Any, float] = {(sid, k): float(v) for sid, s in sums.items() for k, v in enumerate(s.cpu())}
    got = _distributed.add_up_named({**named, ("samples",): samples}, _DIFFERENT)
    samples = round(got.pop(("samples",)))
    sums = {sid: torch.tensor([got[(sid, k)] for k in range(len(s))]) for sid, s in sums.items()}
    worst = _distributed.largest([checks.get(sid, -1.0) for sid in sorted(chains)])
    checks = {sid: v for sid, v in zip(sorted(chains), worst) if v >= 0}
    out = {}
    for sid in chains:
        norms = [float(v) / samples for v in sums[sid].cpu()]
        cut = len(norms) - 1 if len(norms) - 1 < len(chains[sid]) else None
        out[sid] = {"norms": norms, "lengths": len(norms) - 1, "check": checks.get(sid),
                    **summary(norms, n=len(chains[sid])), "truncated_at": cut}
    return out


_DIFFERENT = ("the processes' streams differ (the model took other paths on their batches); measure the "
              "path lengths in one process")


# -- Veit's sampler -----------------------------------------------------------------------------
def _patterns(n: int, k: int, samples: int, rng: random.Random) -> list[tuple[int, ...]]:
    if math.comb(n, k) <= samples:
        return list(combinations(range(n), k))
    seen: set[tuple[int, ...]] = set()
    while len(seen) < samples:
        seen.add(tuple(sorted(rng.sample(range(n), k))))
    return sorted(seen)


def path_gradients(p: _ForwardPass, chain: list[Block], patterns: list[tuple[int, ...]]) -> list[Tensor]:
    """The gradient at the stream input when only the branches in each pattern (positions
    along ``chain``) and the skips elsewhere pass gradient: one path pattern per backward."""
    index = {b.name: k for k, b in enumerate(p.plan.blocks)}
    ids = [index[b.name] for b in chain]
    fork = p.handles.nodes[p.plan.blocks[ids[0]].fork]
    total = p.losses.sum()
    out = []
    plan = p.plan
    try:
        for pattern in patterns:
            chosen = set(pattern)
            for t, i in enumerate(ids):
                plan.branch_backward[i] = 1.0 if t in chosen else 0.0
                plan.skip_backward[i] = 0.0 if t in chosen else 1.0
            out.append(_input_grad(p, ids[0], fork, total))
    finally:
        plan.branch_backward.clear()
        plan.skip_backward.clear()
    return out


def sample_profile(model: nn.Module, graph: Graph, blocks: list[Block], inputs: Inputs | Data, *,
                   objective: Any = None, samples: int = 8, seed: int = 0, train: bool = False,
                   targets: Any = None,
                   progress: Callable[[int, int], None] | None = None) -> dict[int, dict[str, Any]]:
    """Per stream, Veit's measurement on every batch of ``inputs`` (a ``Data``, or one batch of
    ``Inputs`` with its ``targets``): for each length k, ``samples`` path patterns with k
    branches (all of them when there are fewer), drawn once and run on every batch, one
    backward pass each. ``path_mean[k]`` is the mean gradient magnitude at the stream input of
    one path of length k per sample: the magnitudes are summed over all samples and divided by
    their number, so it does not depend on how the data is batched. ``log10_total[k]`` is that
    times ``C(n, k)``: the total magnitude over all paths of length k. ``samples`` and
    ``batches``: what the measurement covered. ``progress(done, total)`` is called after each
    path length of each stream, batch by batch."""
    data = inputs if isinstance(inputs, Data) else _one_batch(inputs, targets)
    chains = stream_blocks(blocks)
    rng = random.Random(seed)
    drawn = {sid: [_patterns(len(c), k, samples, rng) for k in range(len(c) + 1)]
             for sid, c in chains.items()}
    sums = {sid: [0.0] * (len(c) + 1) for sid, c in chains.items()}
    rows = dict.fromkeys(chains, 0)
    covered = batches = 0
    step = Steps(progress, _distributed.share_size(data.batches) * sum(len(c) + 1 for c in chains.values()))
    runner = _Runner(model, None, graph, blocks, objective, copy=False, train=train)
    with runner.session as session:
        for inp, tgt in _distributed.share(data, data.batches):  # torch.distributed: this process's
            p = runner.run(*session.on(inp, tgt))
            covered, batches = covered + batch_size(inp), batches + 1
            for sid, chain in chains.items():
                got, n_rows = _magnitudes(p, chain, drawn[sid], step)
                sums[sid] = [a + b for a, b in zip(sums[sid], got)]
                rows[sid] += n_rows
    named: dict[Any, float] = {(sid, k): v for sid, s in sums.items() for k, v in enumerate(s)}
    named.update({(sid, "rows"): r for sid, r in rows.items()})
    added = _distributed.add_up_named({**named, ("covered",): covered, ("batches",): batches}, _DIFFERENT)
    sums = {sid: [added[(sid, k)] for k in range(len(s))] for sid, s in sums.items()}
    rows = {sid: round(added[(sid, "rows")]) for sid in rows}
    covered, batches = round(added[("covered",)]), round(added[("batches",)])
    return {sid: _sampled(sums[sid], drawn[sid], rows[sid], covered, batches) for sid in chains}


def _one_batch(inputs: Inputs, targets: Any) -> Data:
    n = batch_size(inputs)
    return Data("example", "one batch", n, max(n, 1), lambda: iter([(inputs, targets)]))


def _magnitudes(p: _ForwardPass, chain: list[Block], drawn: list[list[tuple[int, ...]]],
                step: Callable[[], None] | None = None) -> tuple[list[float], int]:
    """Per length, the gradient magnitudes at the stream input summed over the patterns and
    over the samples (rows) of this pass, in float64; and the number of rows. ``step()`` after
    each length."""
    sums, rows = [], 0
    for pats in drawn:
        total = 0.0
        for g in path_gradients(p, chain, pats):
            rows = int(g.shape[0]) if g.dim() else 1
            total += float(g.reshape(rows, -1).double().norm(dim=1).sum())
        sums.append(total)
        if step is not None:
            step()
    return sums, rows


def _sampled(sums: list[float], drawn: list[list[tuple[int, ...]]], rows: int, covered: int,
             batches: int) -> dict[str, Any]:
    n = len(drawn) - 1
    means = [v / (len(pats) * max(rows, 1)) for v, pats in zip(sums, drawn)]
    logs = path_counts(n)
    totals = [math.log10(v) + c if v > 0 else None for v, c in zip(means, logs)]
    share = [10 ** t if t is not None else 0.0 for t in totals]
    return {"path_mean": means, "log10_total": totals, "patterns": [len(p) for p in drawn], **summary(share),
            "samples": covered, "batches": batches}
