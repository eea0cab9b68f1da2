"""The record of a watched training run: ``DIR/resprobe-run.jsonl``, one JSON object per line.

The first line describes the run (``kind: "run"``: the model, its residual blocks in stream
order, the layers they form, how often steps are measured, how many processes took part);
each later line is one measured step (``kind: "step"``: per-block numbers as in report.json's
refinement and gradients probes, and per stream the effective-depth estimate). Plain JSON,
no torch: ``read_run`` gives the typed records back (docs/watch.md describes every field).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SourceError

__all__ = ["FILE", "FORMAT", "SCALARS", "Run", "RunBlock", "RunHeader", "RunStep", "RunStream", "RunWriter",
           "read_run", "scalars"]

FILE = "resprobe-run.jsonl"
FORMAT = 1
# The numbers a dashboard gets per layer (or per block), besides each stream's effective depth.
SCALARS = ("update_ratio", "block_influence", "branch_gain", "grad_norm", "grad_weight_ratio")


@dataclass(frozen=True)
class RunBlock:
    """A residual block of the watched model: its name, stream and position in it (1-based)."""

    name: str
    stream: int
    step: int


@dataclass(frozen=True)
class RunHeader:
    """What was watched: ``blocks`` in stream order, ``layers`` (name -> block names) where the
    blocks repeat in layers (attention + MLP), ``every`` (a step is measured when its number is
    a multiple of it), ``world_size`` (processes whose numbers were merged)."""

    model: str
    blocks: tuple[RunBlock, ...]
    layers: tuple[tuple[str, tuple[str, ...]], ...]
    every: int
    world_size: int = 1
    version: str = ""
    started: str = ""
    notes: tuple[str, ...] = ()

    def streams(self) -> dict[int, list[str]]:
        """Block names by stream, in step order."""
        out: dict[int, list[str]] = {}
        for b in self.blocks:
            out.setdefault(b.stream, []).append(b.name)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "run", "format": FORMAT, "resprobe": self.version, "model": self.model,
                "started": self.started, "every": self.every, "world_size": self.world_size,
                "blocks": [{"name": b.name, "stream": b.stream, "step": b.step} for b in self.blocks],
                "layers": [{"name": n, "blocks": list(bs)} for n, bs in self.layers],
                "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunHeader:
        return cls(model=str(d["model"]), every=int(d["every"]), world_size=int(d.get("world_size", 1)),
                   blocks=tuple(RunBlock(str(b["name"]), int(b["stream"]), int(b["step"]))
                                for b in d["blocks"]),
                   layers=tuple((str(x["name"]), tuple(x["blocks"])) for x in d.get("layers", ())),
                   version=str(d.get("resprobe", "")), started=str(d.get("started", "")),
                   notes=tuple(d.get("notes", ())))


@dataclass(frozen=True)
class RunStream:
    """One stream at one step: its nominal depth and the effective-depth estimate (mean path
    length of the gradient, its central 90% window), None where a gain was not measured."""

    id: int
    nominal: int
    effective_depth: float | None
    window: tuple[int, int] | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "nominal": self.nominal, "effective_depth": self.effective_depth,
                "window": None if self.window is None else list(self.window)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunStream:
        w = d.get("window")
        return cls(int(d["id"]), int(d["nominal"]), d.get("effective_depth"),
                   None if w is None else (int(w[0]), int(w[1])))


@dataclass(frozen=True)
class RunStep:
    """One measured step: ``blocks`` maps each block name to its numbers (the keys of
    report.json's refinement and gradients probes; None where not measured), ``samples`` the
    samples of every micro-batch of the step (all processes), ``time`` seconds since the epoch."""

    step: int
    time: float
    elapsed: float
    samples: int
    micro_batches: int
    blocks: Mapping[str, Mapping[str, Any]]
    streams: tuple[RunStream, ...]
    notes: tuple[str, ...] = ()

    def value(self, block: str, metric: str) -> float | None:
        """One number, None where it was not measured."""
        v = self.blocks.get(block, {}).get(metric)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "step", "step": self.step, "time": self.time, "elapsed": self.elapsed,
                "samples": self.samples, "micro_batches": self.micro_batches,
                "blocks": {k: dict(v) for k, v in self.blocks.items()},
                "streams": [s.to_dict() for s in self.streams], "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunStep:
        return cls(step=int(d["step"]), time=float(d["time"]), elapsed=float(d.get("elapsed", 0.0)),
                   samples=int(d.get("samples", 0)), micro_batches=int(d.get("micro_batches", 1)),
                   blocks={str(k): dict(v) for k, v in d["blocks"].items()},
                   streams=tuple(RunStream.from_dict(s) for s in d.get("streams", ())),
                   notes=tuple(d.get("notes", ())))


@dataclass(frozen=True)
class Run:
    """A watched run as read back: its header and its measured steps in order."""

    header: RunHeader
    steps: tuple[RunStep, ...] = field(default=())
    path: str = ""

    def series(self, block: str, metric: str) -> list[tuple[int, float | None]]:
        """``(step, value)`` of one block's metric over the run."""
        return [(s.step, s.value(block, metric)) for s in self.steps]


def scalars(header: RunHeader, record: RunStep) -> dict[str, float]:
    """A step's numbers for a dashboard (TensorBoard, a trainer's logger), few enough to stay
    readable: ``resprobe/<metric>/<layer>`` (the mean over the layer's blocks; per block
    where the blocks form no layers) for the metrics in ``SCALARS``, and
    ``resprobe/effective_depth/stream<id>``."""
    groups = [(name, list(blocks)) for name, blocks in header.layers] \
        or [(b.name, [b.name]) for b in header.blocks]
    out: dict[str, float] = {}
    for metric in SCALARS:
        for name, blocks in groups:
            values = [v for v in (record.value(b, metric) for b in blocks)
                      if v is not None and math.isfinite(v)]
            if values:
                out[f"resprobe/{metric}/{name or 'model'}"] = sum(values) / len(values)
    for s in record.streams:
        if s.effective_depth is not None:
            out[f"resprobe/effective_depth/stream{s.id}"] = float(s.effective_depth)
    return out


def _finite(v: Any) -> Any:
    """JSON-safe: non-finite floats become None (report.json's rule)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


class RunWriter:
    """Appends a run's records to ``DIR/resprobe-run.jsonl`` (created with its folder; an
    existing record there is replaced at the first write, or kept and followed with
    ``append``: a resumed run). Each line is
    flushed when written, so a run that dies keeps every step measured before."""

    def __init__(self, log_dir: str | os.PathLike[str], append: bool = False):
        self.dir = Path(log_dir)
        self.append = append  # a resumed run: its steps follow the earlier ones (read_run keeps the last run)
        self.path = self.dir / FILE
        self._file: Any = None

    def header(self, header: RunHeader) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.dir.is_symlink() or not self.dir.is_dir():
            raise SourceError(f"{self.dir} is not a folder; pass log_dir= a folder to write the run into")
        self._file = open(self.path, "a" if self.append else "w", encoding="utf-8")  # noqa: SIM115
        self._line(header.to_dict())

    def step(self, record: RunStep) -> None:
        if self._file is not None:
            self._line(record.to_dict())

    def _line(self, d: dict[str, Any]) -> None:
        self._file.write(json.dumps(_finite(d), allow_nan=False, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8") as f:
        for k, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as err:
                if not line.endswith("\n"):  # the last line of a run that died while writing it
                    return
                raise SourceError(f"{path}:{k} is not JSON ({err.msg}); is this a resprobe run "
                                  "record?") from err
            if not isinstance(d, dict):
                raise SourceError(f"{path}:{k} is not a JSON object; is this a resprobe run record?")
            yield k, d


def read_run(path: str | os.PathLike[str]) -> Run:
    """A run's records from its folder (``DIR/resprobe-run.jsonl``) or the file itself. A run
    resumed into the same folder (the same blocks) continues the record: its steps follow the
    earlier ones, replacing any it measured again; a record of another model starts over."""
    p = Path(path)
    if p.is_dir():
        p = p / FILE
    if not p.is_file():
        raise SourceError(f"no run record at {p}: pass the log_dir given to resprobe.watch "
                          f"(it holds {FILE})")
    header: RunHeader | None = None
    steps: list[RunStep] = []
    for k, d in _lines(p):
        try:
            if d.get("kind") == "run":
                if d.get("format", FORMAT) > FORMAT:
                    raise SourceError(f"{p} was written by a newer resprobe (format {d.get('format')}); "
                                      "upgrade resprobe to read it")
                new = RunHeader.from_dict(d)
                if header is None or new.blocks != header.blocks:  # another model: its run alone counts
                    steps = []
                header = new  # the same model resumed: its steps follow the earlier ones
            elif d.get("kind") == "step" and header is not None:
                step = RunStep.from_dict(d)
                steps = [s for s in steps if s.step < step.step]  # steps a resumed run measured again
                steps.append(step)
        except (KeyError, TypeError, ValueError) as err:
            raise SourceError(f"{p}:{k}: a malformed record ({type(err).__name__}: {err}); "
                              "is this a resprobe run record?") from err
    if header is None:
        raise SourceError(f"{p} holds no run header; is this a resprobe run record?")
    return Run(header, tuple(steps), str(p))
