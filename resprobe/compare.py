"""Two reports side by side: the same blocks' numbers in A and B, their differences, and what changed."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import SourceError, UsageError
from .metrics import by_key
from .report import BlockReport, Report

__all__ = [
    "COMPARED",
    "BlockComparison",
    "Comparison",
    "DepthChange",
    "MetricChange",
    "ReportLike",
    "RoleChange",
    "change_text",
    "compare_reports",
    "read_report",
]

ReportLike = Report | str | os.PathLike[str]  # what compare_reports reads

# (probe, key) of every per-block number compared, in table order; keys are unique across probes
COMPARED: tuple[tuple[str, str], ...] = (
    ("refinement", "update_ratio"), ("refinement", "block_influence"), ("refinement", "cos_branch_skip"),
    ("refinement", "variance_ratio"), ("gradients", "grad_norm"), ("gradients", "skip_gain"),
    ("gradients", "branch_gain"), ("gradients", "iterative_cos"), ("lesion", "loss_change"),
    ("lens", "kl_to_final"),
)
_RANKED = ("update_ratio", "branch_gain")  # the metrics whose largest changes the sentences name
_HINT = "pass a report.json or a folder holding one (resprobe analyze -o DIR writes it)"
SCHEMA = 1  # of ``Comparison.to_dict``


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _relative(a: float | None, b: float | None) -> float | None:
    """``(b - a) / |a|``; 0 when both are 0, None when either is missing or only ``a`` is 0."""
    if a is None or b is None:
        return None
    if a == 0:
        return 0.0 if b == 0 else None
    return (b - a) / abs(a)


def _size(a: float | None, b: float | None) -> float:
    """How large a change is, 0 to 2 and symmetric in ``a`` and ``b``: ``|b - a| / max(|a|, |b|)``
    (0 when either is missing)."""
    if a is None or b is None or a == b:
        return 0.0
    return abs(b - a) / max(abs(a), abs(b))


@dataclass(frozen=True)
class MetricChange:
    """One metric of one block in A and B (None: not measured there)."""

    probe: str
    key: str
    a: float | None
    b: float | None

    @property
    def label(self) -> str:
        """The metric's name as the report's tables show it."""
        return by_key(self.probe, self.key).label

    @property
    def delta(self) -> float | None:
        """``b - a``, or None when either is missing."""
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def relative(self) -> float | None:
        """``(b - a) / |a|``; 0 when both are 0, None when either is missing or only ``a`` is 0."""
        return _relative(self.a, self.b)

    @property
    def size(self) -> float:
        """How large the change is, 0 to 2 and symmetric in A and B: ``|b - a| / max(|a|, |b|)``
        (0 when either is missing); what the largest changes are ranked by."""
        return _size(self.a, self.b)

    def to_dict(self) -> dict[str, Any]:
        return {"probe": self.probe, "a": self.a, "b": self.b, "delta": self.delta, "relative": self.relative}


@dataclass(frozen=True)
class BlockComparison:
    """A block found (by name) in both reports: where it sits, its role and its numbers in each."""

    name: str
    stream_a: int | None
    stream_b: int | None
    step_a: int | None
    step_b: int | None
    skip_a: str
    skip_b: str
    label_a: str | None
    label_b: str | None
    metrics: tuple[MetricChange, ...] = ()

    def metric(self, key: str) -> MetricChange | None:
        """The comparison of metric ``key`` (e.g. ``"update_ratio"``), or None when neither report has it."""
        return next((m for m in self.metrics if m.key == key), None)

    @property
    def role_changed(self) -> bool:
        """Both reports label the block (refine, rebuild, idle), differently."""
        return self.label_a is not None and self.label_b is not None and self.label_a != self.label_b

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "stream_a": self.stream_a, "stream_b": self.stream_b,
                "step_a": self.step_a, "step_b": self.step_b, "skip_a": self.skip_a, "skip_b": self.skip_b,
                "label_a": self.label_a, "label_b": self.label_b,
                "metrics": {m.key: m.to_dict() for m in self.metrics}}


@dataclass(frozen=True)
class RoleChange:
    """A block labelled differently in A and B."""

    block: str
    a: str
    b: str

    def to_dict(self) -> dict[str, Any]:
        return {"block": self.block, "a": self.a, "b": self.b}


@dataclass(frozen=True)
class DepthChange:
    """A stream's effective depth (the depth probe's) in A and B, and its nominal depth (blocks)."""

    stream: int
    a: float | None
    b: float | None
    nominal_a: int | None
    nominal_b: int | None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    def to_dict(self) -> dict[str, Any]:
        return {"stream": self.stream, "a": self.a, "b": self.b, "delta": self.delta,
                "nominal_a": self.nominal_a, "nominal_b": self.nominal_b}


@dataclass(frozen=True)
class Comparison:
    """Report A and report B side by side. ``blocks``: the blocks both hold (matched by name, in
    A's order); ``only_a``/``only_b``: the others. ``context``: (what, in A, in B) for what the
    numbers depend on besides the weights (model, data, objective, inputs, settings).
    ``changes``: what changed, in sentences; empty when the reports agree."""

    model_a: str
    model_b: str
    source_a: str | None
    source_b: str | None
    metrics: tuple[str, ...]
    blocks: tuple[BlockComparison, ...]
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]
    role_changes: tuple[RoleChange, ...]
    depth: tuple[DepthChange, ...]
    context: tuple[tuple[str, str, str], ...]
    changes: tuple[str, ...]

    def block(self, name: str) -> BlockComparison | None:
        """The matched block called ``name``, or None."""
        return next((b for b in self.blocks if b.name == name), None)

    def largest(self, key: str, n: int = 3) -> list[BlockComparison]:
        """The ``n`` blocks whose metric ``key`` changed most (``MetricChange.size``); unchanged ones
        left out."""
        sized = [(m.size, b) for b in self.blocks if (m := b.metric(key)) is not None and m.size > 0]
        return [b for _, b in sorted(sized, key=lambda x: -x[0])[:n]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "resprobe_version": __version__,
            "model_a": self.model_a, "model_b": self.model_b,
            "source_a": self.source_a, "source_b": self.source_b,
            "context": [{"what": w, "a": a, "b": b} for w, a, b in self.context],
            "metrics": list(self.metrics), "blocks": [b.to_dict() for b in self.blocks],
            "only_a": list(self.only_a), "only_b": list(self.only_b),
            "role_changes": [r.to_dict() for r in self.role_changes],
            "depth": [d.to_dict() for d in self.depth], "changes": list(self.changes),
        }


def read_report(source: ReportLike, which: str = "report") -> Report:
    """``source`` as a Report: a Report as it is, else read from a report.json or a folder
    holding one. Raises ``SourceError`` (naming ``which``) when it cannot be read."""
    if isinstance(source, Report):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise UsageError(f"cannot compare a {type(source).__name__} as {which}: pass a resprobe.Report, "
                         "a report.json or a report folder")
    path = Path(source)
    file = path / "report.json" if path.is_dir() else path
    if path.is_dir() and not file.is_file():
        raise SourceError(f"{which}: {path} holds no report.json; {_HINT}")
    try:
        data = json.loads(file.read_bytes())
    except FileNotFoundError:
        raise SourceError(f"{which}: {path} does not exist; {_HINT}") from None
    except OSError as err:
        raise SourceError(f"{which}: cannot read {file} ({err.strerror or err}); {_HINT}") from None
    except (ValueError, RecursionError):
        raise SourceError(f"{which}: {file} is not JSON; {_HINT}") from None
    return _from_dict(data, file, which)


def _from_dict(data: Any, file: Path, which: str) -> Report:
    if not isinstance(data, dict) or "schema" not in data:
        raise SourceError(f"{which}: {file} is JSON but not a resprobe report; {_HINT}")
    try:
        return Report.from_dict(data)
    except UsageError as err:  # another schema
        raise SourceError(f"{which}: {file}: {err}") from None
    except KeyError as err:
        raise SourceError(f"{which}: {file} is not a resprobe report (it has no {err.args[0]!r}); "
                          f"{_HINT}") from None
    except (TypeError, ValueError, AttributeError, IndexError):
        raise SourceError(f"{which}: {file} is not a resprobe report (malformed); {_HINT}") from None


def compare_reports(a: ReportLike, b: ReportLike, *, threshold: float = 0.1, top: int = 3) -> Comparison:
    """Compare report ``a`` with report ``b`` (each a ``Report``, a report.json or a folder holding
    one). ``threshold``: the smallest relative change of a block's update ratio or branch gain
    that the sentences name (at most ``top`` blocks per metric)."""
    ra, rb = read_report(a, "report A"), read_report(b, "report B")
    by_b = {blk.name: blk for blk in rb.blocks}
    names_a = {blk.name for blk in ra.blocks}
    matched = [(blk, by_b[blk.name]) for blk in ra.blocks if blk.name in by_b]
    keys = _present(pair for x, y in matched for pair in (x, y))
    blocks = tuple(_block(x, y, keys) for x, y in matched)
    roles = tuple(RoleChange(c.name, c.label_a, c.label_b) for c in blocks
                  if c.role_changed and c.label_a is not None and c.label_b is not None)
    context = _context(ra, rb)
    comparison = Comparison(
        model_a=ra.model.class_name, model_b=rb.model.class_name,
        source_a=_where(a), source_b=_where(b), metrics=tuple(k for _, k in keys), blocks=blocks,
        only_a=tuple(dict.fromkeys(blk.name for blk in ra.blocks if blk.name not in by_b)),
        only_b=tuple(dict.fromkeys(blk.name for blk in rb.blocks if blk.name not in names_a)),
        role_changes=roles, depth=_depths(ra, rb), context=context, changes=(),
    )
    changes = [*_caveats(ra, rb, context), *_structure(ra, rb, comparison), *_role_sentences(roles),
               *_metric_sentences(comparison, threshold, top), *_loss_sentences(ra, rb, threshold),
               *_depth_sentences(comparison.depth)]
    return replace(comparison, changes=tuple(changes))


def _where(source: ReportLike) -> str | None:
    return None if isinstance(source, Report) else os.fspath(source)


def _value(block: BlockReport, probe: str, key: str) -> float | None:
    found = block.metrics.get(probe)
    return None if found is None else _finite(found.number(key))


def _present(blocks: Iterable[BlockReport]) -> tuple[tuple[str, str], ...]:
    """The compared metrics at least one of ``blocks`` has a value for."""
    seen = list(blocks)
    return tuple(pk for pk in COMPARED if any(_value(blk, *pk) is not None for blk in seen))


def _label(block: BlockReport) -> str | None:
    return block.label if isinstance(block.label, str) else None


def _block(x: BlockReport, y: BlockReport, keys: tuple[tuple[str, str], ...]) -> BlockComparison:
    return BlockComparison(
        x.name, x.stream, y.stream, x.step, y.step, x.skip, y.skip, _label(x), _label(y),
        tuple(MetricChange(p, k, _value(x, p, k), _value(y, p, k)) for p, k in keys),
    )


def _depth_streams(report: Report) -> dict[int, Mapping[str, Any]]:
    """The depth probe's streams by id (its summary's ``streams``)."""
    depth = report.result("depth")
    found = depth.summary.get("streams", ()) if depth is not None else ()
    if not isinstance(found, tuple):
        return {}
    return {s["id"]: s for s in found if isinstance(s, Mapping) and isinstance(s.get("id"), int)}


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return _finite(float(value)) if ok else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _depths(ra: Report, rb: Report) -> tuple[DepthChange, ...]:
    sa, sb = _depth_streams(ra), _depth_streams(rb)
    out = []
    for sid in sorted(set(sa) | set(sb)):
        x, y = sa.get(sid, {}), sb.get(sid, {})
        out.append(DepthChange(sid, _number(x.get("effective_depth")), _number(y.get("effective_depth")),
                               _count(x.get("nominal")), _count(y.get("nominal"))))
    return tuple(d for d in out if d.a is not None or d.b is not None)


def _text(value: Any) -> str:
    return "–" if value is None or value == "" else str(value)


def _data(report: Report) -> str:
    d = report.data
    if d is None:
        return "–"
    n = d.get("measured_samples")
    return f"{_text(d.get('description'))} ({_text(n)} sample{'' if n == 1 else 's'})"


def _objective(report: Report) -> str:
    o = report.objective
    return "–" if o is None else f"{_text(o.get('name'))}: {_text(o.get('description'))}"


def _loss(report: Report) -> float | None:
    return None if report.objective is None else _finite(report.objective.number("mean_loss"))


def _shape(shape: Any) -> str:
    return "x".join(map(str, shape)) if isinstance(shape, tuple) else _text(shape)


def _inputs(report: Report) -> str:
    return ", ".join(f"{i.name}: {_shape(i.shape)} {i.dtype}" for i in report.model.inputs) or "–"


def _parameters(report: Report) -> str:
    n = _count(report.model.parameters)
    return _text(report.model.parameters) if n is None else f"{n:,}"


def _settings(report: Report) -> str:
    m = report.model
    refinement = report.result("refinement")
    train = refinement.summary.get("train") if refinement is not None else None
    parts = [f"{m.device} · {m.dtype or '–'}" + (f" · autocast {m.autocast}" if m.autocast else "")]
    if train is not None:
        parts.append("train mode" if train else "eval mode")
    return " · ".join(parts)


def _thresholds(report: Report) -> str:
    refinement = report.result("refinement")
    t = refinement.summary.get("thresholds") if refinement is not None else None
    if not isinstance(t, Mapping):
        return "–"
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in t.items())


_CONTEXT = (  # (what, how to read it from a report)
    ("model", lambda r: r.model.class_name),
    ("source", lambda r: _text(r.model.source) if r.model.source else "Python"),
    ("weights", lambda r: _text(r.model.weights)),
    ("parameters", _parameters),
    ("blocks", lambda r: f"{len(r.residual)} residual on {len(r.streams)} stream(s), "
                         f"{len(r.blocks) - len(r.residual)} concat skip(s)"),
    ("data", _data),
    ("objective", _objective),
    ("mean loss", lambda r: _text(None if (v := _loss(r)) is None else f"{v:.4g}")),
    ("inputs", _inputs),
    ("settings", _settings),
    ("label thresholds", _thresholds),
    ("probes", lambda r: ", ".join(x.probe for x in r.results) or "–"),
    ("resprobe", lambda r: _text(r.resprobe_version)),
)


def _context(ra: Report, rb: Report) -> tuple[tuple[str, str, str], ...]:
    return tuple((what, read(ra), read(rb)) for what, read in _CONTEXT)


def _caveats(ra: Report, rb: Report, context: tuple[tuple[str, str, str], ...]) -> list[str]:
    """What else differs between the two measurements, so that the numbers may not differ by the weights."""
    ctx = {what: (x, y) for what, x, y in context}
    out = []
    if (x := ctx["data"])[0] != x[1]:
        out.append(f"A and B were measured on different data (A: {x[0]}; B: {x[1]}): the differences "
                   "may come from the data, not only from the weights")
    elif (x := ctx["inputs"])[0] != x[1]:
        out.append(f"A and B were measured on different inputs (A: {x[0]}; B: {x[1]}): the differences "
                   "may come from the inputs, not only from the weights")
    if (x := ctx["objective"])[0] != x[1]:
        out.append(f"A and B took gradients of different objectives (A: {x[0]}; B: {x[1]}): the gradient "
                   "metrics may differ by the objective, not only by the weights")
    if (x := ctx["settings"])[0] != x[1]:
        out.append(f"A and B were measured in different settings (A: {x[0]}; B: {x[1]})")
    if (x := ctx["label thresholds"])[0] != x[1]:
        out.append(f"the refine/rebuild/idle labels used different thresholds (A: {x[0]}; B: {x[1]}): a "
                   "role change may come from the thresholds")
    if (x := ctx["weights"])[0] != x[1]:
        out.append(f"A has {x[0]} weights, B {x[1]} weights")
    probes_a, probes_b = {r.probe for r in ra.results}, {r.probe for r in rb.results}
    for only, side in ((probes_a - probes_b, "A"), (probes_b - probes_a, "B")):
        if only:
            out.append(f"probe(s) {', '.join(sorted(only))} ran only for {side}: their numbers are not "
                       "compared")
    return out


def _loss_sentences(ra: Report, rb: Report, threshold: float) -> list[str]:
    """The objective's mean loss, when it changed: the gradient norms (‖∂L/∂y‖) scale with it."""
    a, b = _loss(ra), _loss(rb)
    if a is None or b is None or _size(a, b) < threshold:
        return []
    return [f"the mean loss of the objective changed: {a:.4g} → {b:.4g} ({_percent(_relative(a, b))}); "
            "the gradient norms scale with it"]


def _names(names: tuple[str, ...], n: int = 5) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def _structure(ra: Report, rb: Report, c: Comparison) -> list[str]:
    """Structural differences: the model, its size, blocks in one report only, blocks moved."""
    out = []
    if ra.model.class_name != rb.model.class_name:
        out.append(f"A is a {ra.model.class_name}, B a {rb.model.class_name}")
    if (n := (_parameters(ra), _parameters(rb)))[0] != n[1]:
        out.append(f"A has {n[0]} parameters, B {n[1]}")
    if not c.blocks and (ra.blocks or rb.blocks):
        out.append("no block is in both reports: no block's numbers can be compared")
    if c.only_a:
        out.append(f"{len(c.only_a)} block(s) only in A: {_names(c.only_a)}")
    if c.only_b:
        out.append(f"{len(c.only_b)} block(s) only in B: {_names(c.only_b)}")
    moved = tuple(b.name for b in c.blocks if (b.stream_a, b.step_a) != (b.stream_b, b.step_b))
    if moved:
        out.append(f"{len(moved)} block(s) sit elsewhere on the streams in B: {_names(moved)}")
    skips = tuple(f"{b.name} ({b.skip_a} → {b.skip_b})" for b in c.blocks if b.skip_a != b.skip_b)
    if skips:
        out.append(f"{len(skips)} block(s) have another skip in B: {_names(skips)}")
    return out


def _role_sentences(roles: tuple[RoleChange, ...]) -> list[str]:
    if not roles:
        return []
    shown = _names(tuple(f"{r.block} {r.a} → {r.b}" for r in roles))
    return [f"{len(roles)} block(s) changed role: {shown}"]


def _percent(value: float | None) -> str:
    if value is None:
        return "from 0"
    if value == 0:
        return "0%"
    if value >= 9:  # ten times or more: a factor reads better than a percentage
        return f"×{1 + value:.3g}"
    return f"{value:+.1%}" if 0 < abs(value) < 0.01 else f"{value:+.0%}"


def change_text(m: MetricChange) -> str:
    """``a → b (relative change)`` in the metric's own format."""
    fmt = by_key(m.probe, m.key).fmt
    a = "–" if m.a is None else fmt.format(m.a)
    b = "–" if m.b is None else fmt.format(m.b)
    return f"{a} → {b} ({_percent(m.relative)})" if m.delta is not None else f"{a} → {b}"


def _metric_sentences(c: Comparison, threshold: float, top: int) -> list[str]:
    out = []
    for key in _RANKED:
        if key not in c.metrics:
            continue
        ranked = sorted(((b.name, m) for b in c.blocks if (m := b.metric(key)) is not None and m.size > 0),
                        key=lambda x: -x[1].size)
        if not ranked:
            continue
        label = ranked[0][1].label
        big = [(name, m) for name, m in ranked if m.size >= threshold][:top]
        if big:
            shown = "; ".join(f"{name} {change_text(m)}" for name, m in big)
            out.append(f"largest change{'s' if len(big) > 1 else ''} of {label}: {shown}")
        else:
            name, m = ranked[0]
            out.append(f"{label} changed by less than {threshold:.0%} in every block (at most "
                       f"{_percent(m.relative)}, {name})")
    return out


def _depth_sentences(depth: tuple[DepthChange, ...]) -> list[str]:
    out = []
    for d in depth:
        if d.a is None or d.b is None or f"{d.a:.2f}" == f"{d.b:.2f}":
            continue
        if d.nominal_a == d.nominal_b:
            of_a, of_b = "", "" if d.nominal_b is None else f" of {d.nominal_b} blocks"
        else:
            of_a, of_b = (f" of {_text(n)} blocks" for n in (d.nominal_a, d.nominal_b))
        out.append(f"effective depth of stream {d.stream}: {d.a:.2f}{of_a} → {d.b:.2f}{of_b} "
                   f"({d.b - d.a:+.2f})")
    return out
