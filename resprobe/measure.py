"""measure(model, graph, blocks, data): one instrumented forward + backward per batch, every
refinement and gradient-flow statistic kept as running sums on the device, read back once."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ._stats import BACKWARD, FORWARD, GAINS, VALUES, Collector, Sums
from .blocks import Block, find_blocks
from .capture import ModuleTree, capture, forward, preserved, unwrap
from .data import Data
from .data import batch_size as _batch_size
from .errors import AnalysisError, UsageError
from .graph import Graph
from .inputs import Inputs
from .instrument import Instrument, Mismatch
from .objective import Objective, ObjectiveFn, choose_objective

__all__ = ["DTYPES", "Measurement", "Settings", "layers", "measure"]

DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Settings:
    """How to measure: ``dtype`` runs the model under autocast (statistics stay fp32);
    ``train`` keeps train mode (buffers are restored afterwards); a block is labelled
    ``refine`` when its update ratio < ``refine_ratio`` and its block influence
    < ``refine_influence``, else ``rebuild``. The rest configure the ``depth`` and ``lesion``
    probes (see docs/effective-depth.md)."""

    dtype: str = "float32"
    train: bool = False
    refine_ratio: float = 1.0
    refine_influence: float = 0.5
    exact: bool = False  # depth: the exact path-length profile (~n/2 backward passes per batch)
    max_length: int | None = None  # depth: keep path lengths <= this in the exact profile
    sample: int = 0  # depth: Veit's sampler, this many path patterns per length (0: off)
    validate: bool = False  # depth: exact profile next to the estimate, with their distance
    lesion_draws: int = 3  # lesion: random sets per size on the degradation curve
    lesion_modules: tuple[str, ...] = ()  # lesion: modules to delete as well (output := input)


@dataclass(frozen=True)
class Measurement:
    """Per block (by name) and per stream, everything one measurement found; plain data."""

    blocks: dict[str, dict[str, Any]]
    streams: list[dict[str, Any]]
    objective: dict[str, Any]
    data: dict[str, Any]
    notes: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)


def layers(graph: Graph, blocks: list[Block]) -> list[tuple[str, list[int], int | None]]:
    """Groups of consecutive blocks that make one repeating layer (attention + MLP in a
    transformer): the blocks' module classes repeat with a period p >= 2 that divides their
    count. Each group: its name (the blocks' common module path), block positions in
    ``blocks``, and the node that leaves the layer (its output), if found."""
    classes = [graph.modules.get(b.name.split("#")[0], b.name) for b in blocks]
    n = len(blocks)
    period = next((p for p in range(1, n // 2 + 1) if n % p == 0
                   and all(classes[k] == classes[k % p] for k in range(n))), n)
    if period < 2 or period == n:
        return []
    groups = []
    for start in range(0, n, period):
        idx = list(range(start, start + period))
        name = _common([blocks[k].name.split("#")[0] for k in idx])
        groups.append((name, idx, _layer_output(graph, name, blocks[idx[0]].skip_operand)))
    return groups


def _common(names: list[str]) -> str:
    parts = [n.split(".") for n in names]
    common = []
    for column in zip(*parts):
        if len(set(column)) != 1:
            break
        common.append(column[0])
    return ".".join(common)


def _layer_output(graph: Graph, name: str, like: int) -> int | None:
    inside = {n.id for n in graph.nodes if name and (n.module == name or n.module.startswith(name + "."))}
    shape = graph.nodes[like].shape
    leaving = {i for n in graph.nodes if n.id not in inside for i in n.inputs if i in inside}
    leaving |= inside & set(graph.outputs)
    found = [i for i in leaving if graph.nodes[i].shape == shape]
    return max(found) if found else None


class _Plan:
    """Gates, stream order and layers for one graph."""

    def __init__(self, graph: Graph, blocks: list[Block]):
        self.graph = graph
        self.blocks = [b for b in blocks if b.is_residual]
        pos = {b.name: k for k, b in enumerate(self.blocks)}
        by_stream: dict[int, list[Block]] = {}
        for b in self.blocks:
            if b.stream is not None:
                by_stream.setdefault(b.stream, []).append(b)
        self.stream_ids = sorted(by_stream)
        self.streams = [[pos[b.name] for b in sorted(by_stream[s], key=lambda b: b.step or 0)]
                        for s in self.stream_ids]
        self.layers: list[tuple[str, list[int], int | None]] = []
        for idx in self.streams:
            for name, ks, out in layers(graph, [self.blocks[k] for k in idx]):
                self.layers.append((name, [idx[k] for k in ks], out))
        watch = tuple(out for _, _, out in self.layers if out is not None)
        self.instrument = Instrument(graph, self.blocks, watch)
        self.names = [b.name for b in self.blocks]
        self.params: dict[str, list[str]] = {
            b.name: list(dict.fromkeys(p for i in b.branch for p in graph.nodes[i].params))
            for b in self.blocks}


@contextmanager
def _trainable(tree: ModuleTree) -> Iterator[list[str]]:
    """Every float parameter requires grad for the pass; flags restored afterwards."""
    frozen = [(n, p) for n, p in tree.params.items() if not p.requires_grad and p.is_floating_point()]
    try:
        for _, p in frozen:
            p.requires_grad_(True)
        yield [n for n, _ in frozen]
    finally:
        for _, p in frozen:
            p.requires_grad_(False)


class _Run:
    """The measurement over every batch (see ``measure``)."""

    def __init__(self, model: nn.Module, tree: ModuleTree, graph: Graph, blocks: list[Block],
                 objective: str | ObjectiveFn | None, settings: Settings):
        self.model, self.tree, self.settings = model, tree, settings
        self.spec = objective
        self.plan = _Plan(graph, blocks)
        self.plans: dict[tuple[str, ...], _Plan] = {}
        self.sums = Sums()
        self.objective: Objective | None = None
        self.grads: dict[str, Tensor] = {}
        self.samples = 0
        self.block_samples: dict[str, int] = {}
        self.redone = 0
        self.skipped = 0
        self.no_grad = False
        self.divergence: Mismatch | None = None
        self.extra: list[str] = []
        self.grad_error = ""
        self.ungated: set[str] = set()
        self.adopted = False

    def batch(self, inp: Inputs, targets: Any) -> None:
        got = self._pass(self.plan, inp, targets)
        if got is None:
            # Re-capture this batch with autograd on (some models record other ops with grad on,
            # e.g. a .contiguous() that is a no-op without it). Same blocks: adopt the new graph.
            # Other blocks: the control flow changed; this batch's blocks are matched by name.
            with self._autocast(inp):
                graph = capture(self.model, inp, grad=True, train=self.settings.train)
            plan = _Plan(graph, find_blocks(graph))
            same = plan.names == self.plan.names
            if same:
                self.plan = plan
                self.adopted = True
            else:
                self.redone += 1
            got = self._pass(plan, inp, targets, streams=same)
            if got is None:
                self.skipped += 1
                return
        sums, n, names = got
        self.sums.merge(sums)
        self.samples += n
        for name in names:
            self.block_samples[name] = self.block_samples.get(name, 0) + n

    def _pass(self, plan: _Plan, inp: Inputs, targets: Any,
              streams: bool = True) -> tuple[Sums, int, list[str]] | None:
        sums = Sums()
        collector = Collector(plan.names, plan.streams if streams else [],
                              plan.layers if streams else [], sums)
        device = _device(self.tree, inp)
        anchor = torch.zeros((), device=device, requires_grad=True)
        mismatches: list[Mismatch] = []
        with torch.enable_grad(), self._autocast(inp):
            out, recorder = forward(self.model, self.tree, inp, watcher=plan.instrument.watcher(collector),
                                    rewrite=lambda rec: plan.instrument.rewrites(rec, collector, anchor,
                                                                                 mismatches))
        if not plan.instrument.check(recorder, mismatches):
            self.divergence = self.divergence or mismatches[0]
            return None
        collector.finish_forward()
        collector.ungated = plan.instrument.ungated()
        for i in collector.ungated:
            self.ungated.add(plan.names[i])
        if self.objective is None:
            self.objective = choose_objective(self.spec, out, inp, targets, self.model)
        losses = self.objective.losses(out, inp, targets)
        n = int(losses.shape[0]) if losses.numel() > 1 else _batch_size(inp)
        sums.add(("objective", "loss"), losses)
        if self._backward(plan, losses.sum(), anchor):
            collector.finish_backward()
        else:
            for key in [k for k in sums.v if k[1] in (BACKWARD, GAINS, "iterative_cos")]:
                del sums.v[key]
        return sums, n, plan.names

    def _autocast(self, inp: Inputs) -> Any:
        dtype = DTYPES[self.settings.dtype]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(_device(self.tree, inp).type, dtype=dtype)

    def _backward(self, plan: _Plan, total: Tensor, anchor: Tensor) -> bool:
        """Gradients of ``total``; False when there are none (the notes say why)."""
        if not total.requires_grad:
            self.no_grad = True
            return False
        names = list(dict.fromkeys(p for ps in plan.params.values() for p in ps))
        params = [self.tree.params[p] for p in names if p in self.tree.params]
        try:
            grads = torch.autograd.grad(total, [anchor, *params], allow_unused=True)
        except RuntimeError as err:  # e.g. the model overwrites in place a tensor backward needs
            self.grad_error = str(err).strip().splitlines()[0]
            return False
        for name, g in zip(names, grads[1:]):
            if g is not None:
                g = g.detach().float()
                self.grads[name] = g if name not in self.grads else self.grads[name] + g
        return True

    def result(self, data: Data) -> Measurement:
        if not self.samples:
            m = self.divergence
            where = f" (node {m.node}: expected {m.expected}, got {m.got})" if m else ""
            raise AnalysisError(f"no batch could be measured: the model took a different path on every "
                                f"batch than when it was captured{where}; run with --debug and report it")
        host = self.sums.host()
        norms = self._param_norms()
        blocks = {b.name: _block_numbers(b.name, host, norms.get(b.name), self.settings,
                                         self.block_samples.get(b.name, 0)) for b in self.plan.blocks}
        for name, count in self.block_samples.items():  # blocks seen only on other paths
            if name not in blocks:
                blocks[name] = _block_numbers(name, host, None, self.settings, count)
        assert self.objective is not None
        loss = _mean(host.get(("objective", "loss")))
        zero = [n for n, v in blocks.items() if v["grad_norm"] == 0]
        if zero:
            self.extra.append(f"the gradient reaching {len(zero)} join(s) is exactly zero (e.g. a "
                              "zero-initialised output layer), so their gains are undefined: "
                              f"{', '.join(zero[:3])}"
                              + (" …" if len(zero) > 3 else ""))
        return Measurement(
            blocks=blocks, streams=self._streams(host),
            objective={"name": self.objective.name, "description": self.objective.description,
                       "mean_loss": loss},
            data={**data.to_dict(), "measured_samples": self.samples},
            notes=tuple(self._notes(data)), settings=dict(vars(self.settings)),
        )

    def _param_norms(self) -> dict[str, tuple[float, float]]:
        out = {}
        flat = []
        for block, names in self.plan.params.items():
            got = [(self.grads[p], self.tree.params[p]) for p in names if p in self.grads]
            if got:
                norm = torch.linalg.vector_norm
                flat.append((block, torch.stack([
                    norm(torch.stack([norm(g) for g, _ in got])),
                    norm(torch.stack([norm(p.detach().float()) for _, p in got]))]).square()))
        if flat:
            values = torch.stack([v.to(flat[0][1].device) for _, v in flat]).cpu().double()
            for (block, _), (g2, w2) in zip(flat, values.tolist()):
                out[block] = (math.sqrt(g2) / self.samples, math.sqrt(w2))
        return out

    def _streams(self, host: dict[Any, tuple[Any, Any, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for sid, idx in zip(self.plan.stream_ids, self.plan.streams):
            entry = host.get(("angular", len(out)))
            matrix = None
            if entry is not None:
                total, _, count = entry
                matrix = [[None if c == 0 else round(float(t / c), 6) for t, c in zip(tr, cr)]
                          for tr, cr in zip(total.tolist(), count.tolist())]
            names = [self.plan.names[k] for k in idx]
            ls = [{"name": name, "blocks": [self.plan.names[k] for k in ks],
                   "block_influence": _mean(host.get(("layer", name)))}
                  for name, ks, _ in self.plan.layers if ks[0] in idx]
            states = [f"input of {n}" for n in names] + [f"output of {names[-1]}"]
            out.append({"id": sid, "blocks": names, "states": states,
                        "angular_distance": matrix, "layers": ls})
        return out

    def _notes(self, data: Data) -> list[str]:
        notes = []
        if data.kind == "example" and "random" in data.description:
            notes.append(f"measured on {data.description}; pass --data to measure on real inputs")
        if self.redone:
            seen = sorted(k for k, v in self.block_samples.items() if v != self.samples)
            notes.append(f"control flow changed on {self.redone} batch(es): each was re-captured and its "
                         f"blocks matched by name" + (f"; blocks not in every batch: {', '.join(seen[:6])}"
                                                      if seen else ""))
        if self.skipped:
            notes.append(f"{self.skipped} batch(es) skipped: the model took a different path when re-run")
        notes += self.extra
        if self.adopted:
            notes.append("the model records other ops with autograd on than off: its graph was captured "
                         "again with autograd on (and autocast, if set) for the measurement")
        if self.ungated:
            notes.append(f"the input of {len(self.ungated)} block(s) is written in place by an op that also "
                         f"reads it, so its gradient cannot be split into skip and branch parts (gains and "
                         f"iterative cosine left out): {', '.join(sorted(self.ungated)[:4])}")
        if self.grad_error:
            notes.append(f"gradient statistics not measured: autograd failed ({self.grad_error[:200]}); "
                         "a model that writes in place into a tensor its backward needs cannot be "
                         "differentiated as written")
        if self.no_grad:
            notes.append("the objective did not depend on anything that can take a gradient: "
                         "gradient statistics were not measured")
        return notes


def _row(entry: tuple[Any, Any, Any] | None, k: int = 0) -> tuple[float, float, float] | None:
    if entry is None:
        return None
    s, q, c = (v.reshape(-1) for v in entry)
    row = (float(s[k]), float(q[min(k, q.numel() - 1)]), float(c[min(k, c.numel() - 1)]))
    return row if row[2] else None


def _mean(entry: tuple[Any, Any, Any] | None, k: int = 0) -> float | None:
    row = _row(entry, k)
    return None if row is None else row[0] / row[2]


def _std(entry: tuple[Any, Any, Any] | None, k: int = 0) -> float | None:
    row = _row(entry, k)
    if row is None:
        return None
    s, q, c = row
    return math.sqrt(max(q / c - (s / c) ** 2, 0.0))


def _block_numbers(name: str, host: dict[Any, tuple[Any, Any, Any]], norms: tuple[float, float] | None,
                   settings: Settings, samples: int) -> dict[str, Any]:
    def get(key: str) -> float | None:
        group = next((g for g in (FORWARD, BACKWARD, GAINS) if key in g), key)
        value = _mean(host.get((name, group)), group.index(key) if isinstance(group, tuple) else 0)
        return None if value is None else round(value, 8)

    ratio, influence = get("update_ratio"), get("block_influence")
    values = host.get((name, VALUES))
    var_b, var_s = _std(values, 0), _std(values, 1)
    d: dict[str, Any] = {
        "samples": samples,
        "update_ratio": ratio, "update_ratio_std": _round(_std(host.get((name, FORWARD)), 0)),
        "variance_ratio": None if var_b is None or not var_s else round(var_b**2 / var_s**2, 8),
        "cos_branch_skip": get("cos_branch_skip"), "block_influence": influence,
        "label": None if ratio is None or influence is None else (
            "refine" if ratio < settings.refine_ratio and influence < settings.refine_influence
            else "rebuild"),
        "grad_norm": get("grad_norm"), "skip_gain": get("skip_gain"), "branch_gain": get("branch_gain"),
        "iterative_cos": get("iterative_cos"), "lesion_first_order": get("lesion_first_order"),
        "param_grad_norm": None, "param_norm": None, "grad_weight_ratio": None,
    }
    if norms is not None:
        g, w = norms
        d.update(param_grad_norm=round(g, 10), param_norm=round(w, 8),
                 grad_weight_ratio=round(g / w, 10) if w else None)
    return d


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 8)


def _device(tree: ModuleTree, inp: Inputs) -> torch.device:
    for p in tree.params.values():
        return p.device
    for _, v in inp.named():
        if isinstance(v, Tensor):
            return v.device
    return torch.device("cpu")


def measure(model: nn.Module, graph: Graph, blocks: list[Block], data: Data, *,
            objective: str | ObjectiveFn | None = None, settings: Settings | None = None,
            progress: Callable[[int, int], None] | None = None) -> Measurement:
    """Measure every residual block of ``model`` (found as ``blocks`` in ``graph``) on
    ``data``: one instrumented forward + backward per batch (see docs/metrics.md).

    The model is left bit-identical: parameters, buffers, training flags, ``requires_grad``,
    existing ``.grad`` (never written: gradients are taken with ``torch.autograd.grad``),
    hooks and the global RNG state.
    """
    settings = settings or Settings()
    if settings.dtype not in DTYPES:
        raise UsageError(f"unknown dtype {settings.dtype!r}; use {', '.join(DTYPES)}")
    if graph.device == "meta":
        raise UsageError("the model has no weights (meta device): there is nothing to measure")
    model, _ = unwrap(model)
    tree = ModuleTree(model)
    run = _Run(model, tree, graph, blocks, objective, settings)
    device = _device(tree, Inputs())
    with ExitStack() as stack:
        stack.enter_context(preserved(model, tree, settings.train))
        stack.enter_context(torch.random.fork_rng(
            devices=[device.index or 0] if device.type == "cuda" else []))
        frozen = stack.enter_context(_trainable(tree))
        for k, (inp, targets) in enumerate(data):
            inp = inp.to(device) if device.type != "cpu" else inp
            if isinstance(targets, Tensor):
                targets = targets.to(device)
            run.batch(inp, targets)
            if progress is not None:
                progress(k + 1, data.batches)
    result = run.result(data)
    if frozen:
        result = Measurement(result.blocks, result.streams, result.objective, result.data,
                             result.notes + (f"{len(frozen)} frozen parameter tensor(s) took gradients "
                                             "for the measurement only (requires_grad restored)",),
                             result.settings)
    return result
