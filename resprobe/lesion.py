"""Lesion studies: delete residual blocks (branch scaled to 0 in the forward pass, ``y = s``)
or whole modules (output replaced by input), and measure what changes."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _distributed
from ._stats import significant
from .blocks import Block
from .data import Data
from .errors import AnalysisError, UsageError
from .gated import Gated, gated
from .graph import Graph
from .objective import Objective, choose_objective, main_output
from .session import Steps

__all__ = ["PROPORTIONS", "curve_sizes", "lesion", "wilson_interval"]

_CLASSIFYING = frozenset({"self-ce", "next-token", "task"})
PROPORTIONS = ("agreement", "accuracy", "base_accuracy")  # per-sample shares: reported with an interval
_Z95 = 1.959963984540054  # the two-sided 95% quantile of the standard normal


def wilson_interval(successes: float, n: int, z: float = _Z95) -> list[float] | None:
    """Wilson's score interval ``[lo, hi]`` for a proportion ``successes / n`` (95% by
    default); None without samples. ``successes`` may be fractional (a sum of per-sample shares)."""
    if n <= 0 or not math.isfinite(successes):
        return None
    p, z2 = min(max(successes / n, 0.0), 1.0), z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return [round(max(centre - half, 0.0), 6), round(min(centre + half, 1.0), 6)]


def curve_sizes(n: int, points: int = 8) -> list[int]:
    """How many blocks to delete at once for the degradation curve: every k up to ``points``
    values, spread evenly over 1..n."""
    if n <= points:
        return list(range(1, n + 1))
    return sorted({max(1, round(1 + (n - 1) * j / (points - 1))) for j in range(points)})


@contextmanager
def _module_deleted(model: nn.Module, name: str) -> Iterator[None]:
    """``model.<name>`` passes its first input through unchanged (a hook, removed on exit)."""
    module = dict(model.named_modules()).get(name)
    if module is None:
        raise UsageError(f"the model has no module {name!r} to delete; see `resprobe blocks` for names")

    def through(_: nn.Module, args: tuple[Any, ...], out: Any) -> Any:
        first = args[0] if args else None
        if not isinstance(first, Tensor) or not isinstance(out, Tensor) or first.shape != out.shape:
            raise UsageError(f"module {name!r} cannot be deleted: its output is not shaped like its input")
        return args[0]

    handle = module.register_forward_hook(through)
    try:
        yield
    finally:
        handle.remove()


class _Effects:
    """Accumulates, per lesion, the change of loss, accuracy, agreement and output."""

    def __init__(self) -> None:
        self.sums: dict[str, dict[str, float]] = {}
        self.count: dict[str, dict[str, int]] = {}

    def add(self, key: str, values: dict[str, Tensor]) -> None:
        entry, counts = self.sums.setdefault(key, {}), self.count.setdefault(key, {})
        for k, v in values.items():  # each metric counts its own values (a scalar loss is one)
            entry[k] = entry.get(k, 0.0) + float(v.sum())
            counts[k] = counts.get(k, 0) + int(v.numel())

    def added_up(self, samples: int) -> int:
        """Under torch.distributed: every process's sums and counts added up (and ``samples``,
        returned); nothing changes in one process."""
        named: dict[Any, float] = {("sum", k, m): v for k, d in self.sums.items() for m, v in d.items()}
        named.update({("count", k, m): v for k, d in self.count.items() for m, v in d.items()})
        named[("samples",)] = samples
        got = _distributed.add_up_named(named, "the processes' lesions differ (the model took other paths "
                                               "on their batches); measure it in one process")
        for name, v in got.items():
            if name[0] == "sum":
                self.sums[name[1]][name[2]] = v
            elif name[0] == "count":
                self.count[name[1]][name[2]] = round(v)
        return round(got[("samples",)])

    def mean(self, key: str) -> dict[str, float]:
        counts = self.count.get(key, {})
        return {k: significant(v / max(counts.get(k, 0), 1)) for k, v in self.sums.get(key, {}).items()}

    def described(self, key: str) -> dict[str, Any]:
        """The means, the number of samples they average (``output_change`` has one value per
        sample), and a Wilson interval for each proportion, over those samples: the positions
        of one sample (tokens) are not independent, so a sample counts once."""
        out: dict[str, Any] = dict(self.mean(key))
        counts, sums = self.count.get(key, {}), self.sums.get(key, {})
        n = counts.get("output_change", 0)
        out["samples"] = n
        for k in PROPORTIONS:
            if k in sums:
                out[f"{k}_interval"] = wilson_interval(sums[k], n)
        return out


def _compare(full: Any, lesioned: Any, objective: Objective, inputs: Any, targets: Any,
             base_losses: Tensor) -> dict[str, Tensor]:
    """Per sample: loss change, output change, and for classifying outputs KL and agreement."""
    a, b = main_output(full).float(), main_output(lesioned).float()
    n = a.shape[0]
    if objective.name == "self-ce":  # against the full model's prediction, not the lesioned one's own
        losses = F.cross_entropy(b, a.argmax(-1), reduction="none")
    else:
        losses = objective.losses(lesioned, inputs, targets)
    out = {"loss_change": losses - base_losses,
           "output_change": (b - a).reshape(n, -1).norm(dim=1)
           / a.reshape(n, -1).norm(dim=1).clamp_min(1e-30)}
    regression = isinstance(targets, Tensor) and targets.is_floating_point()
    if objective.name in _CLASSIFYING and a.dim() >= 2 and not regression:
        logp, logq = F.log_softmax(a, -1), F.log_softmax(b, -1)
        out["kl"] = (logp.exp() * (logp - logq)).sum(-1).reshape(n, -1).mean(1)
        out["agreement"] = (a.argmax(-1) == b.argmax(-1)).float().reshape(n, -1).mean(1)
        if isinstance(targets, Tensor) and not targets.is_floating_point() and targets.shape == a.shape[:-1]:
            out["accuracy"] = (b.argmax(-1) == targets).float().reshape(n, -1).mean(1)
            out["base_accuracy"] = (a.argmax(-1) == targets).float().reshape(n, -1).mean(1)
    return out


def lesion(model: nn.Module, graph: Graph, blocks: list[Block], data: Data, *, objective: Any = None,
           draws: int = 3, points: int = 8, modules: tuple[str, ...] = (), seed: int = 0,
           train: bool = False, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Delete each residual block of ``blocks`` in turn, then ``draws`` random sets of k
    blocks for each k of ``curve_sizes``, then each module in ``modules``, and report the mean
    change per sample: ``loss_change``, ``output_change`` (‖Δoutput‖/‖output‖), and for
    classifying objectives ``kl`` (KL(full ‖ lesioned) of the softmax), ``agreement`` (top-1
    unchanged) and ``accuracy`` against targets when the data has them. ``samples``: how many
    samples each mean covers (in the result and per block and module), with a Wilson 95%
    interval for each proportion (``agreement_interval``, ``accuracy_interval``, …).
    ``progress(done, total)`` is called after each lesion (block, set or module), batch by batch."""
    effects = _Effects()
    rng = random.Random(seed)
    residual = [b for b in blocks if b.is_residual]
    sizes = curve_sizes(len(residual), points)
    sets = [(f"k={k}#{d}", rng.sample(range(len(residual)), k)) for k in sizes for d in range(draws)]
    lesions = [(b.name, [i]) for i, b in enumerate(residual)] + sets
    chosen: Objective | None = None
    rerouted: set[str] = set()
    samples = 0
    step = Steps(progress, _distributed.share_size(data.batches) * (len(lesions) + len(modules)))
    with gated(model, graph, blocks, train=train) as g:
        for batch in _distributed.share(data, data.batches):  # torch.distributed: this process's batches
            inp, targets = g.session.on(*batch)
            with torch.no_grad():
                full = g.run(inp)
                if chosen is None:
                    chosen = choose_objective(objective, full, inp, targets, g.model)
                base = chosen.losses(full, inp, targets)
                samples += int(main_output(full).shape[0])
                effects.add("full", {"loss": base})
                for key, out in _deleted(g, inp, lesions, len(residual), replicas=1 if train else 0):
                    if out is None:  # the deletion sent the model down another path: no comparison
                        rerouted.add(key)
                    else:
                        effects.add(key, _compare(full, out, chosen, inp, targets, base))
                    step()
                for name in modules:  # on the model itself: a deleted module may be a block's branch
                    with _module_deleted(g.model, name):
                        out = g.model(*inp.args, **inp.kwargs)
                    effects.add(f"module:{name}", _compare(full, out, chosen, inp, targets, base))
                    step()
    assert chosen is not None
    samples = effects.added_up(samples)
    rerouted = _distributed.union(rerouted)
    curve = []
    for k in sizes if draws else ():
        rows = [r for r in (effects.mean(f"k={k}#{d}") for d in range(draws)) if r]
        if not rows:
            continue
        curve.append({"deleted": k, "draws": draws, **{key: significant(sum(r[key] for r in rows) / len(rows))
                                                      for key in rows[0]},
                      **{f"{key}_std": significant(_std([r[key] for r in rows])) for key in rows[0]}})
    return {"objective": {"name": chosen.name, "description": chosen.description},
            "loss": effects.mean("full").get("loss"), "samples": samples,
            "blocks": {b.name: effects.described(b.name) for b in residual},
            "modules": {name: effects.described(f"module:{name}") for name in modules},
            "curve": curve, "rerouted": sorted(k for k in rerouted if not k.startswith("k="))}


_MAX_ROWS = 4096  # samples per batched lesion pass


def _deleted(g: Gated, inp: Any, lesions: list[tuple[str, list[int]]], n: int,
             replicas: int = 0) -> Iterator[tuple[str, Tensor | None]]:
    """The model's main output with each lesion's blocks deleted. Several lesions share one
    forward pass, one per copy of the batch stacked along the first dimension, with a branch
    scale per sample (``replicas`` copies at most; 0 = as many as fit ``_MAX_ROWS``). In
    train mode samples are not independent (batch statistics): there, one lesion per pass."""
    size = next((int(v.shape[0]) for _, v in inp.named() if isinstance(v, Tensor) and v.dim()), 1)
    per_pass = replicas or (max(1, _MAX_ROWS // max(size, 1)) if _stackable(inp, size) else 1)
    device = g.session.device

    def one(idx: list[int]) -> Tensor | None:
        scales = torch.ones(n, device=device)
        scales[idx] = 0.0
        try:
            return main_output(g.run(inp, scales))
        except AnalysisError:  # control flow that depends on values took another path: None
            return None

    start = 0
    while start < len(lesions):
        chunk = lesions[start:start + per_pass]
        if len(chunk) == 1:
            yield chunk[0][0], one(chunk[0][1])
            start += 1
            continue
        scales = torch.ones(len(chunk) * size, n, device=device)
        for r, (_, idx) in enumerate(chunk):
            scales[r * size:(r + 1) * size, idx] = 0.0
        try:
            out = main_output(g.run(inp.repeat(len(chunk)), scales))
        except (RuntimeError, AnalysisError):  # dim 0 is not the batch inside (windows, rows), or rerouted
            per_pass = 1
            continue
        parts = []
        if out.shape[0] == len(chunk) * size:
            parts = [out[r * size:(r + 1) * size] for r in range(len(chunk))]
        alone = one(chunk[0][1]) if start == 0 and parts else None
        if start == 0 and parts and (alone is None or not _same(parts[0], alone)):
            parts = []  # checked once: the copies of the batch interact
        if not parts:  # not batch-first, or the samples interact: one lesion per pass
            per_pass = 1
            continue
        for (key, _), part in zip(chunk, parts):
            yield key, part
        start += len(chunk)


def _same(batched: Tensor, alone: Tensor) -> bool:
    """Whether a batched lesion pass matches a lone one; NaN and inf (a model with non-finite
    weights) must sit at the same places, the finite values agree within tolerance."""
    finite = alone[torch.isfinite(alone)]
    scale = float(finite.abs().max().clamp_min(1)) if finite.numel() else 1.0
    return batched.shape == alone.shape and torch.allclose(batched, alone, rtol=1e-4, atol=1e-5 * scale,
                                                           equal_nan=True)


def _stackable(inp: Any, size: int) -> bool:
    """Whether every tensor input is a batch of ``size`` samples along its first dimension."""
    for _, v in inp.named():
        if isinstance(v, Tensor):
            if not v.dim() or v.shape[0] != size:
                return False
        elif isinstance(v, (list, tuple, dict)):
            return False
    return True


def _std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
