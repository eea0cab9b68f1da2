"""Report: the typed, read-only result of an analysis, with a versioned JSON form (``report.json``).

Every part is a frozen dataclass (``ModelInfo``, ``GraphInfo``, ``StreamInfo``, ``BlockReport``)
or a read-only mapping (``Numbers``: one probe's numbers); ``to_dict`` gives report.json's
form and ``from_dict`` reads it back, key for key. Writing and display live above this module:
``save`` and ``_repr_html_`` hand the report to the exporters the plugin registry holds."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar, overload

from ._save import check_output_dir, save_whole
from ._version import __version__
from .errors import UsageError
from .plugins import Registry, registry

__all__ = [
    "SCHEMA",
    "BlockMetrics",
    "BlockReport",
    "GradientNumbers",
    "GraphInfo",
    "InputInfo",
    "LensNumbers",
    "LesionNumbers",
    "ModelInfo",
    "Numbers",
    "ProbeResult",
    "RefinementNumbers",
    "Report",
    "StreamInfo",
    "VerifyNumbers",
    "check_output_dir",
]

SCHEMA = 2


def _frozen(value: Any) -> Any:
    """``value`` made read-only: lists become tuples, dicts ``Numbers``."""
    if isinstance(value, Mapping) and not isinstance(value, Numbers):
        return Numbers(value)
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    """``value`` in report.json's form: tuples become lists, mappings and parts dicts."""
    if isinstance(value, (Numbers, _Part)):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class Numbers(Mapping[str, Any]):
    """Numbers of one probe (for one block, or its summary) as report.json holds them, read-only:
    lists are tuples and nested objects ``Numbers``. Typed views (``RefinementNumbers``...)
    name the built-in probes' metrics as attributes."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values = {str(k): _frozen(v) for k, v in (values or {}).items()}

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._values!r})"

    def number(self, key: str) -> float | None:
        """The value of ``key`` as a float, or None when it is missing or not a number."""
        v = self._values.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self._values.items()}


class _Number:
    """A typed attribute of a ``Numbers`` view: the value of the same-named key, a float or None."""

    key = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    @overload
    def __get__(self, obj: None, owner: type) -> _Number: ...
    @overload
    def __get__(self, obj: Numbers, owner: type) -> float | None: ...
    def __get__(self, obj: Numbers | None, owner: type) -> _Number | float | None:
        return self if obj is None else obj.number(self.key)


class _Text:
    """A typed attribute of a ``Numbers`` view: the value of the same-named key, a str or None."""

    key = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    @overload
    def __get__(self, obj: None, owner: type) -> _Text: ...
    @overload
    def __get__(self, obj: Numbers, owner: type) -> str | None: ...
    def __get__(self, obj: Numbers | None, owner: type) -> _Text | str | None:
        if obj is None:
            return self
        v = obj.get(self.key)
        return v if isinstance(v, str) else None


class VerifyNumbers(Numbers):
    """``verify`` for one block: ``ok`` (True, False, or None: not checked), ``error``."""

    __slots__ = ()
    error = _Number()
    detail = _Text()

    @property
    def ok(self) -> bool | None:
        v = self.get("ok")
        return v if isinstance(v, bool) else None


class RefinementNumbers(Numbers):
    """``refinement`` for one block (docs/metrics.md)."""

    __slots__ = ()
    samples = _Number()
    units = _Number()
    update_ratio = _Number()
    update_ratio_std = _Number()
    variance_ratio = _Number()
    cos_branch_skip = _Number()
    block_influence = _Number()
    label = _Text()


class GradientNumbers(Numbers):
    """``gradients`` for one block (docs/metrics.md)."""

    __slots__ = ()
    samples = _Number()
    grad_norm = _Number()
    skip_gain = _Number()
    branch_gain = _Number()
    iterative_cos = _Number()
    lesion_first_order = _Number()
    param_grad_norm = _Number()
    param_norm = _Number()
    grad_weight_ratio = _Number()


class LesionNumbers(Numbers):
    """``lesion`` for one block: what deleting it does (docs/metrics.md)."""

    __slots__ = ()
    loss_change = _Number()
    output_change = _Number()
    kl = _Number()
    agreement = _Number()
    accuracy = _Number()
    base_accuracy = _Number()
    samples = _Number()

    @property
    def agreement_interval(self) -> tuple[float, float] | None:
        v = self.get("agreement_interval")
        return (float(v[0]), float(v[1])) if isinstance(v, tuple) and len(v) == 2 else None


class LensNumbers(Numbers):
    """``lens`` for one block: the prediction read from the stream after it (docs/lens.md);
    ``not_measured`` says why when the model's tail cannot take its state."""

    __slots__ = ()
    kl_to_final = _Number()
    top1_agreement = _Number()
    entropy = _Number()
    loss = _Number()
    tuned_kl_to_final = _Number()
    tuned_top1_agreement = _Number()
    units = _Number()
    not_measured = _Text()


_N = TypeVar("_N", bound=Numbers)
_VIEWS: dict[str, type[Numbers]] = {
    "verify": VerifyNumbers, "refinement": RefinementNumbers, "gradients": GradientNumbers,
    "lesion": LesionNumbers, "lens": LensNumbers,
}


class BlockMetrics(Mapping[str, Numbers]):
    """Every probe's numbers for one block, by probe name; the built-in probes' as typed views
    (``.refinement.update_ratio``), any probe's as ``metrics["name"]``."""

    __slots__ = ("_by_probe",)

    def __init__(self, by_probe: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._by_probe = {p: _VIEWS.get(p, Numbers)(v) for p, v in (by_probe or {}).items()}

    def __getitem__(self, probe: str) -> Numbers:
        return self._by_probe[probe]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_probe)

    def __len__(self) -> int:
        return len(self._by_probe)

    def __repr__(self) -> str:
        return f"BlockMetrics({self._by_probe!r})"

    def _view(self, probe: str, kind: type[_N]) -> _N | None:
        v = self._by_probe.get(probe)
        return v if isinstance(v, kind) else None

    @property
    def verify(self) -> VerifyNumbers | None:
        return self._view("verify", VerifyNumbers)

    @property
    def refinement(self) -> RefinementNumbers | None:
        return self._view("refinement", RefinementNumbers)

    @property
    def gradients(self) -> GradientNumbers | None:
        return self._view("gradients", GradientNumbers)

    @property
    def lesion(self) -> LesionNumbers | None:
        return self._view("lesion", LesionNumbers)

    @property
    def lens(self) -> LensNumbers | None:
        return self._view("lens", LensNumbers)

    def value(self, probe: str, key: str) -> Any:
        """The value of ``key`` in ``probe``'s numbers, or None."""
        found = self._by_probe.get(probe)
        return None if found is None else found.get(key)

    def to_dict(self) -> dict[str, Any]:
        return {p: v.to_dict() for p, v in self._by_probe.items()}


_P = TypeVar("_P", bound="_Part")


class _Part:
    """A frozen dataclass with report.json's keys (a field's ``key`` metadata, else its name).
    ``part["key"]`` reads one key (read-only: lists are tuples), for code written against the
    plain dicts of earlier versions."""

    _parts: ClassVar[dict[str, Any]] = {}  # field name -> how to read its JSON value

    def to_dict(self) -> dict[str, Any]:
        return {f.metadata.get("key", f.name): _plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[_P], d: Mapping[str, Any]) -> _P:
        values = {}
        for f in fields(cls):  # type: ignore[arg-type]
            key = f.metadata.get("key", f.name)
            if key in d:
                read = cls._parts.get(f.name, _frozen)
                values[f.name] = read(d[key])
        return cls(**values)

    def __getitem__(self, key: str) -> Any:
        for f in fields(self):  # type: ignore[arg-type]
            if f.metadata.get("key", f.name) == key:
                return getattr(self, f.name)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


@dataclass(frozen=True)
class InputInfo(_Part):
    """One input tensor of the example inputs."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    elements: int


@dataclass(frozen=True)
class ModelInfo(_Part):
    """What was analysed: its source, class, size, weights' provenance, inputs and device."""

    source: str | None
    class_name: str = field(metadata={"key": "class"})
    parameters: int = 0
    weights: str | None = None
    description: str | None = None
    seed: int | None = None
    inputs: tuple[InputInfo, ...] = ()
    device: str = "cpu"
    dtype: str | None = None
    autocast: str | None = None

    _parts: ClassVar[dict[str, Any]] = {"inputs": lambda v: tuple(InputInfo.from_dict(i) for i in v)}


@dataclass(frozen=True)
class GraphInfo(_Part):
    """The captured graph: its size, how long capture took, and what capture noted."""

    model: str
    nodes: int
    edges: int
    capture_seconds: float = 0.0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class StreamInfo(_Part):
    """A residual stream: its blocks in order, first to last."""

    id: int
    blocks: tuple[str, ...] = ()


@dataclass(frozen=True)
class BlockReport(_Part):
    """One residual block (or concat skip): where it is in the graph, and every probe's numbers
    for it. ``label`` is the refinement verdict (refine, rebuild, idle) or None."""

    name: str
    stream: int | None
    step: int | None
    skip: str
    join: str
    join_op: str
    module: str
    fork_module: str = ""  # the module whose output the skip carries (the encoder level of a U-Net)
    branch_modules: tuple[str, ...] = ()
    fork_node: int = -1
    join_node: int = -1
    skip_nodes: tuple[int, ...] = ()
    branch_nodes: tuple[int, ...] = ()
    metrics: BlockMetrics = field(default_factory=BlockMetrics)
    label: str | None = None

    _parts: ClassVar[dict[str, Any]] = {"metrics": BlockMetrics}

    @property
    def is_residual(self) -> bool:
        """A residual block (an add or scaled add), not a concat skip."""
        return self.skip != "concat"


@dataclass(frozen=True)
class ProbeResult:
    """What one probe measured: summary numbers, numbers per block (by block name), notes on
    what it skipped or approximated. Given as plain dicts, kept read-only (``Numbers``)."""

    probe: str
    summary: Mapping[str, Any] = field(default_factory=dict)
    blocks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        view = _VIEWS.get(self.probe, Numbers)
        object.__setattr__(self, "summary", Numbers(self.summary))
        object.__setattr__(self, "blocks", _ReadOnly({k: view(v) for k, v in self.blocks.items()}))
        object.__setattr__(self, "notes", tuple(self.notes))

    def to_dict(self) -> dict[str, Any]:
        return {"probe": self.probe, "summary": _plain(self.summary),
                "blocks": {k: _plain(v) for k, v in self.blocks.items()}, "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbeResult:
        return cls(d["probe"], d.get("summary", {}), d.get("blocks", {}), tuple(d.get("notes", ())))


class _ReadOnly(Mapping[str, Numbers]):
    """A read-only mapping of block name to numbers."""

    __slots__ = ("_d",)

    def __init__(self, d: dict[str, Numbers]) -> None:
        self._d = d

    def __getitem__(self, key: str) -> Numbers:
        return self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return repr(self._d)


@dataclass(frozen=True)
class Report:
    """Everything an analysis found; see docs/json.md for the schema. Read-only: ``to_dict``
    gives a plain copy."""

    model: ModelInfo
    graph: GraphInfo
    streams: tuple[StreamInfo, ...]
    blocks: tuple[BlockReport, ...]
    results: tuple[ProbeResult, ...] = ()
    notes: tuple[str, ...] = ()
    objective: Numbers | None = None
    data: Numbers | None = None
    resprobe_version: str = __version__
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        for name in ("streams", "blocks", "results", "notes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("objective", "data"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, Numbers):
                object.__setattr__(self, name, Numbers(v))

    def _repr_html_(self) -> str:
        """The HTML report, for Jupyter: the html exporter's fragment (styles scoped to it)."""
        exporter: Any = registry().get("exporter", "html")
        fragment: str = exporter.fragment(self)
        return fragment

    def result(self, probe: str) -> ProbeResult | None:
        return next((r for r in self.results if r.probe == probe), None)

    def block(self, name: str) -> BlockReport | None:
        """The block called ``name``, or None."""
        return next((b for b in self.blocks if b.name == name), None)

    @property
    def residual(self) -> tuple[BlockReport, ...]:
        """The residual blocks (concat skips left out)."""
        return tuple(b for b in self.blocks if b.is_residual)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema, "resprobe_version": self.resprobe_version,
            "model": self.model.to_dict(), "graph": self.graph.to_dict(),
            "streams": [s.to_dict() for s in self.streams], "blocks": [b.to_dict() for b in self.blocks],
            "results": [r.to_dict() for r in self.results], "notes": list(self.notes),
            "objective": None if self.objective is None else self.objective.to_dict(),
            "data": None if self.data is None else self.data.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Report:
        if d.get("schema") != SCHEMA:
            raise UsageError(f"report schema {d.get('schema')!r} is not {SCHEMA}; "
                             f"it was written by resprobe {d.get('resprobe_version', '?')}")
        return cls(ModelInfo.from_dict(d["model"]), GraphInfo.from_dict(d["graph"]),
                   tuple(StreamInfo.from_dict(s) for s in d["streams"]),
                   tuple(BlockReport.from_dict(b) for b in d["blocks"]),
                   tuple(ProbeResult.from_dict(r) for r in d["results"]), tuple(d.get("notes", ())),
                   None if d.get("objective") is None else Numbers(d["objective"]),
                   None if d.get("data") is None else Numbers(d["data"]),
                   d["resprobe_version"], d["schema"])

    def save(self, directory: str | Path, formats: tuple[str, ...] = ("json",),
             plugins: Registry | None = None) -> list[Path]:
        """Write the report with each exporter in ``formats``; returns the paths written.

        The whole set is written into a hidden folder beside ``directory`` first, then put in
        its place, so ``directory`` always holds one complete report: this one or the one
        before. ``directory`` must be missing, empty or an earlier report folder
        (``resprobe.check_output_dir``): a folder that holds other files is refused, never
        replaced."""
        return save_whole(self, directory, formats, plugins)
