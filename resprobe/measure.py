"""measure(model, graph, blocks, data): one instrumented forward + backward per batch, every
refinement and gradient-flow statistic kept as running sums on the device, read back once."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from . import _distributed
from ._plan import Plan as _Plan
from ._stats import BACKWARD, GAINS, Collector, Sums, block_numbers, mean, token_mask
from .blocks import Block
from .data import Data
from .data import batch_size as _batch_size
from .errors import AnalysisError, UsageError
from .graph import Graph
from .inputs import Inputs
from .instrument import Mismatch
from .objective import Objective, ObjectiveFn, choose_objective
from .session import ModuleTree, Session, Steps

__all__ = ["DTYPES", "Measurement", "Settings", "attention_mask", "measure"]

DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
REFINE_INFLUENCE = 0.134  # 1 - cos(30°): a refining block turns the stream by less than 30 degrees


@dataclass(frozen=True)
class Settings:
    """How to measure: ``dtype`` runs the model under autocast (statistics stay fp32);
    ``train`` keeps train mode (buffers are restored afterwards); a block is labelled ``idle``
    when its update ratio < ``idle_ratio`` (it barely touches the stream), ``refine`` when its
    update ratio < ``refine_ratio`` and its block influence < ``refine_influence`` (the
    default, 1 − cos 30°, is calibrated on trained networks: docs/metrics.md), else
    ``rebuild``. The rest configure the ``depth`` and ``lesion`` probes
    (see docs/effective-depth.md); ``options`` holds the values of options declared by other
    probes (plugins: ``resprobe.Option``), by name.

    The probes' command-line options (``Option.name``) map onto these fields: see
    ``with_options``."""

    dtype: str = "float32"
    train: bool = False
    refine_ratio: float = 1.0
    refine_influence: float = REFINE_INFLUENCE
    idle_ratio: float = 0.01
    exact: bool = False  # depth: the exact path-length profile (~n/2 backward passes per batch)
    max_length: int | None = None  # depth: keep path lengths <= this in the exact profile
    sample: int = 0  # depth: Veit's sampler, this many path patterns per length (0: off)
    validate: bool = False  # depth: exact profile next to the estimate, with their distance
    lesion_draws: int = 3  # lesion: random sets per size on the degradation curve
    lesion_modules: tuple[str, ...] = ()  # lesion: modules to delete as well (output := input)
    options: dict[str, Any] = field(default_factory=dict, hash=False)  # plugin probes' options, by name

    def with_options(self, values: dict[str, Any]) -> Settings:
        """These settings with probe option values (by ``Option.name``): a value named like a
        field sets that field, the others go into ``options``."""
        from dataclasses import fields, replace

        own = {f.name for f in fields(self)} - {"options"}
        return replace(self, **{k: v for k, v in values.items() if k in own},
                       options={**self.options, **{k: v for k, v in values.items() if k not in own}})


@dataclass(frozen=True)
class Measurement:
    """Per block (by name) and per stream, everything one measurement found; plain data."""

    blocks: dict[str, dict[str, Any]]
    streams: list[dict[str, Any]]
    objective: dict[str, Any]
    data: dict[str, Any]
    notes: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)


class _Run:
    """The measurement over every batch (see ``measure``); ``session`` holds the model
    (``measure`` enters it; ``tree``: the model's module tree, when walked already)."""

    def __init__(self, model: nn.Module, tree: ModuleTree | None, graph: Graph, blocks: list[Block],
                 objective: str | ObjectiveFn | None, settings: Settings):
        self.session = Session(model, train=settings.train, dtype=DTYPES[settings.dtype], trainable=True,
                               tree=tree)
        self.model, self.tree, self.settings = self.session.model, self.session.tree, settings
        self.spec = objective
        self.plan = _Plan(graph, blocks)
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
        self.processes = 1  # how many processes' batches the numbers cover (torch.distributed)

    def batch(self, inp: Inputs, targets: Any) -> None:
        """Measure one batch (on the model's device). When the model leaves the graph, the batch
        is captured again with autograd on: the same blocks adopt the new graph; other blocks
        (control flow that changed) are measured on it and matched by name."""
        got = self.session.follow(inp, self.plan, lambda plan: self._pass(plan, inp, targets), _Plan,
                                  grad=True, rerouted=True)
        if got.adopted:
            self.plan = got.plan
            self.adopted = True
        elif got.recaptured:
            self.redone += 1
        if got.result is None:
            self.skipped += 1
            return
        sums, n, names = got.result
        self.sums.merge(sums)
        self.samples += n
        for name in names:
            self.block_samples[name] = self.block_samples.get(name, 0) + n

    def _pass(self, plan: _Plan, inp: Inputs, targets: Any) -> tuple[Sums, int, list[str]] | None:
        """One instrumented forward and backward following ``plan`` (None: the model left its
        graph). Streams are measured only on a plan with the blocks of the measured graph."""
        streams = plan.names == self.plan.names
        sums = Sums()
        mask = attention_mask(inp)
        collector = Collector(plan.names, plan.streams if streams else [],
                              plan.layers if streams else [], sums, mask)
        if mask is not None:  # real and all token positions
            sums.add_sums(_TOKENS, mask.new_zeros(2), mask.new_zeros(2),
                          torch.stack([mask.sum(), mask.new_tensor(float(mask.numel()))]))
        anchor = torch.zeros((), device=self.session.device_for(inp), requires_grad=True)
        with torch.enable_grad(), self.session.autocast(inp):
            out, mismatches = self.session.instrumented(plan.instrument, inp, collector, anchor)
        if mismatches:
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

    def _merged(self) -> dict[Any, tuple[Any, Any, Any]]:
        """Every sum on the host; under torch.distributed, added up over the processes first
        (their batch counts with them), and so their parameter gradients."""
        world = _distributed.parts()
        if world == 1:
            return self.sums.host()
        _distributed.same_everywhere(sorted(map(str, self.sums.v)) + sorted(self.grads),
                                     "the processes' batches took different paths through the model; "
                                     "measure it in one process")
        names = [b.name for b in self.plan.blocks]
        counts = torch.tensor([self.samples, self.redone, self.skipped, int(self.no_grad),
                               *(self.block_samples.get(n, 0) for n in names)], dtype=torch.float64)
        zero = torch.zeros_like(counts)
        self.sums.add_sums(_RANKS, zero, zero, counts)
        if self.grads:
            flat = torch.cat([self.grads[n].reshape(-1).double() for n in sorted(self.grads)])
            _distributed.all_reduce_sum(flat)
            at = 0
            for n in sorted(self.grads):
                g = self.grads[n]
                self.grads[n] = flat[at:at + g.numel()].reshape(g.shape).to(g.dtype)
                at += g.numel()
        host = self.sums.host(reduce=_distributed.all_reduce_sum)
        total = [round(float(v)) for v in host.pop(_RANKS)[2].reshape(-1)]
        self.samples, self.redone, self.skipped, self.no_grad = total[0], total[1], total[2], bool(total[3])
        self.block_samples = {n: c for n, c in zip(names, total[4:]) if c}
        self.processes = world
        return host

    def result(self, data: Data) -> Measurement:
        host = self._merged()
        if not self.samples:
            m = self.divergence
            where = f" (node {m.node}: expected {m.expected}, got {m.got})" if m else ""
            raise AnalysisError(f"no batch could be measured: the model took a different path on every "
                                f"batch than when it was captured{where}; run with --debug and report it")
        norms = self._param_norms()
        blocks = {b.name: block_numbers(b.name, host, norms.get(b.name), self.settings,
                                         self.block_samples.get(b.name, 0)) for b in self.plan.blocks}
        for name, count in self.block_samples.items():  # blocks seen only on other paths
            if name not in blocks:
                blocks[name] = block_numbers(name, host, None, self.settings, count)
        assert self.objective is not None
        loss = mean(host.get(("objective", "loss")))
        zero = [n for n, v in blocks.items() if v["grad_norm"] == 0]
        if zero:
            self.extra.append(f"the gradient reaching {len(zero)} join(s) is exactly zero (e.g. a "
                              "zero-initialised output layer), so their gains are undefined: "
                              f"{', '.join(zero[:3])}"
                              + (" …" if len(zero) > 3 else ""))
        tokens, masked = _tokens(host)
        return Measurement(
            blocks=blocks, streams=self._streams(host),
            objective={"name": self.objective.name, "description": self.objective.description,
                       "mean_loss": loss},
            data={**data.to_dict(), "measured_samples": self.samples, **tokens,
                  **({"processes": self.processes} if self.processes > 1 else {})},
            notes=tuple(self._notes(data) + masked), settings=dict(vars(self.settings)),
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
                   "block_influence": mean(host.get(("layer", name)))}
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
        away = [n for n, p in self.tree.params.items()  # weights not held whole by the module between passes
                if p.is_meta or type(p).__name__ == "DTensor"]
        offloaded = [b.name for b in self.plan.blocks
                     if any(n.startswith(b.name.split("#")[0] + ".") for n in away)]
        if offloaded:
            notes.append(f"the weights of {len(offloaded)} block(s) are not held whole by the model between "
                         "passes (offloaded, e.g. by accelerate, or sharded by FSDP, and put together only "
                         "while a pass runs), so their parameter-gradient norms are not measured: "
                         f"{', '.join(offloaded[:4])}" + (" …" if len(offloaded) > 4 else ""))
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


_TOKENS = ("attention_mask", "tokens")
_RANKS = ("processes", "counts")


def attention_mask(inp: Inputs) -> Tensor | None:
    """The batch's ``attention_mask`` keyword input ``[N, T]`` as weights (1: real token,
    0: padding), or None when there is none."""
    mask = inp.kwargs.get("attention_mask")
    if not isinstance(mask, Tensor) or mask.dim() != 2:
        return None
    return token_mask(mask)


def _tokens(host: dict[Any, tuple[Any, Any, Any]]) -> tuple[dict[str, Any], list[str]]:
    """What the report's data and notes say about padding when an attention mask was used."""
    entry = host.get(_TOKENS)
    if entry is None:
        return {}, []
    real, total = (round(float(v)) for v in entry[2].reshape(-1))
    note = (f"the inputs' attention_mask was used: {total - real} padding position(s) of {total} "
            f"({(total - real) / max(total, 1):.0%}) are left out of every per-token statistic and of "
            f"the per-sample gradient sums ({real} real token positions; 'units' per block counts those "
            "measured); the objective itself reads whatever positions it reads")
    return {"attention_mask": True, "measured_tokens": real, "padding_tokens": total - real}, [note]


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
    run = _Run(model, None, graph, blocks, objective, settings)
    step = Steps(progress, _distributed.share_size(data.batches))
    with run.session as session:
        for inp, targets in _distributed.share(data, data.batches):  # torch.distributed: this process's
            run.batch(*session.on(inp, targets))
            step()
    result = run.result(data)
    if session.thawed:
        result = Measurement(result.blocks, result.streams, result.objective, result.data,
                             result.notes + (f"{len(session.thawed)} frozen parameter tensor(s) took "
                                             "gradients for the measurement only (requires_grad restored)",),
                             result.settings)
    return result
