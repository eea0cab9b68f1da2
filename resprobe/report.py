"""Report: the plain-data result of an analysis, with a versioned JSON form (``report.json``)."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import UsageError

__all__ = ["SCHEMA", "ProbeResult", "Report", "check_output_dir"]

SCHEMA = 2


@dataclass(frozen=True)
class ProbeResult:
    """What one probe measured: summary numbers, numbers per block (by block name), notes on
    what it skipped or approximated."""

    probe: str
    summary: dict[str, Any] = field(default_factory=dict)
    blocks: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"probe": self.probe, "summary": dict(self.summary),
                "blocks": {k: dict(v) for k, v in self.blocks.items()}, "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProbeResult:
        blocks = {k: dict(v) for k, v in d.get("blocks", {}).items()}
        return cls(d["probe"], dict(d.get("summary", {})), blocks, tuple(d.get("notes", ())))


@dataclass(frozen=True)
class Report:
    """Everything an analysis found; see docs/json.md for the schema."""

    model: dict[str, Any]
    graph: dict[str, Any]
    streams: list[dict[str, Any]]
    blocks: list[dict[str, Any]]
    results: list[ProbeResult] = field(default_factory=list)
    notes: tuple[str, ...] = ()
    objective: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    resprobe_version: str = __version__
    schema: int = SCHEMA

    def _repr_html_(self) -> str:
        """The HTML report, for Jupyter."""
        from .render.html import report_html

        return report_html(self, full=False)

    def result(self, probe: str) -> ProbeResult | None:
        return next((r for r in self.results if r.probe == probe), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema, "resprobe_version": self.resprobe_version,
            "model": dict(self.model), "graph": dict(self.graph),
            "streams": [dict(s) for s in self.streams], "blocks": [dict(b) for b in self.blocks],
            "results": [r.to_dict() for r in self.results], "notes": list(self.notes),
            "objective": None if self.objective is None else dict(self.objective),
            "data": None if self.data is None else dict(self.data),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        if d.get("schema") != SCHEMA:
            raise UsageError(f"report schema {d.get('schema')!r} is not {SCHEMA}; "
                             f"it was written by resprobe {d.get('resprobe_version', '?')}")
        return cls(dict(d["model"]), dict(d["graph"]), [dict(s) for s in d["streams"]],
                   [dict(b) for b in d["blocks"]], [ProbeResult.from_dict(r) for r in d["results"]],
                   tuple(d.get("notes", ())), d.get("objective"), d.get("data"),
                   d["resprobe_version"], d["schema"])

    def save(self, directory: str | Path, formats: tuple[str, ...] = ("json",),
             plugins: Any = None) -> list[Path]:
        """Write the report with each exporter in ``formats``; returns the paths written.

        The whole set is written into a hidden folder beside ``directory`` first, then put in
        its place, so ``directory`` always holds one complete report: this one or the one
        before. ``directory`` must be missing, empty or an earlier report folder
        (``check_output_dir``): a folder that holds other files is refused, never replaced."""
        from .plugins import registry

        reg = plugins if plugins is not None else registry()
        exporters = [reg.get("exporter", f) for f in formats]
        check_output_dir(directory, reg)
        return _save_whole(self, exporters, Path(directory), _written(reg))


# Written by file browsers when a folder is opened, not by users; replaced with the folder.
_LITTER = frozenset({".DS_Store", "Thumbs.db"})


def check_output_dir(directory: str | Path, plugins: Any = None) -> None:
    """Raise ``UsageError`` unless a report can be saved into ``directory``: it is missing,
    empty or holds only what resprobe's exporters write (an earlier report), and the folder
    around it can be written (the report is put in place by renaming there). Leaves nothing
    behind; call it before a long analysis."""
    if plugins is None:
        from .plugins import registry

        plugins = registry()
    target = _real(directory)
    if target.parent == target:
        raise UsageError(f"cannot write the report into {directory}: it is the root folder; "
                         "choose a new or empty folder with -o")
    if target.exists() and not target.is_dir():
        raise UsageError(f"cannot write the report into {directory}: it is a file, not a folder; "
                         "choose a new or empty folder with -o")
    if _holds_cwd(target):
        raise UsageError(f"cannot write the report into {directory}: it is (or holds) the current "
                         "folder, and a report folder is replaced whole; choose another folder with -o")
    if target.is_dir():
        _refuse_foreign(directory, target, _written(plugins))
    _check_writable(directory, target.parent)


def _real(directory: str | Path) -> Path:
    """The folder ``directory`` names, links resolved (the report replaces the folder, not a link)."""
    return Path(os.path.realpath(directory))


def _holds_cwd(target: Path) -> bool:
    try:
        return Path(os.path.realpath(os.getcwd())).is_relative_to(target)
    except OSError:  # the current folder was deleted
        return False


def _written(plugins: Any) -> tuple[str, ...]:
    """What exporters write (their ``writes``: paths inside the report folder, ``*`` patterns
    allowed): the built-in ones, and any installed plugin that says."""
    from . import exporters

    found = [*exporters.BUILTIN, *plugins.of_kind("exporter").values()]
    return tuple(dict.fromkeys(p for e in found for p in getattr(e, "writes", ()) if isinstance(p, str)))


def _refuse_foreign(directory: str | Path, target: Path, written: tuple[str, ...]) -> None:
    foreign = _foreign(target, written)
    if foreign is not None:
        raise UsageError(f"cannot write the report into {directory}: the folder holds other files, "
                         f"e.g. {foreign}; choose a new or empty folder with -o")


def _foreign(folder: Path, written: tuple[str, ...]) -> str | None:
    """The first path under ``folder`` that no exporter writes, or None. A folder that
    vanishes meanwhile (another save replaced it) holds nothing foreign."""
    def unreadable(err: OSError) -> None:
        if not isinstance(err, FileNotFoundError):
            raise UsageError(f"cannot write the report into {folder}: {err.strerror or err} reading "
                             f"{err.filename}; choose a new or empty folder with -o")

    for root, dirs, files in os.walk(folder, onerror=unreadable):
        rel = Path(root).relative_to(folder)
        for name in sorted(dirs):
            if not any(w.startswith(f"{(rel / name).as_posix()}/") for w in written):
                return (rel / name).as_posix() + "/"
        for name in sorted(files):
            if name not in _LITTER and not any(fnmatchcase((rel / name).as_posix(), w) for w in written):
                return (rel / name).as_posix()
    return None


def _check_writable(directory: str | Path, parent: Path) -> None:
    """Raise unless a folder can be made in ``parent`` or, when it does not exist yet, in its
    nearest existing ancestor (made and removed again: nothing is left behind)."""
    while not parent.exists() and parent.parent != parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"cannot write the report into {directory}: {parent} is a file, not a "
                         "folder; choose another folder with -o")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".resprobe-check-", dir=parent))
    except OSError as err:
        raise UsageError(f"cannot write the report into {directory}: cannot create a folder in "
                         f"{parent} ({err.strerror or err}); choose another folder with -o") from None


def _save_whole(report: Report, exporters: list[Any], directory: Path,
                written: tuple[str, ...]) -> list[Path]:
    """Every exporter writes into a fresh hidden folder beside the target, which then takes
    the target's place whole; the hidden folder is removed whatever happens."""
    target = _real(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.resprobe-tmp-", dir=target.parent))
    try:
        staging = work / "new"
        staging.mkdir()  # mode from the umask, like any new folder (mkdtemp's is 0700)
        paths = [Path(e.write(report, staging)) for e in exporters]
        _sync(staging)
        _put_in_place(staging, target, work / "old", written)
    finally:
        with _sigint_deferred():
            shutil.rmtree(work, ignore_errors=True)
    return [directory / p.relative_to(staging) if p.is_relative_to(staging) else p for p in paths]


def _put_in_place(staging: Path, target: Path, old: Path, written: tuple[str, ...]) -> None:
    """Rename ``staging`` to ``target``; an earlier report there is first moved to ``old``.
    Concurrent saves take turns (the last one wins whole), and Ctrl-C waits until it is done."""
    with _sigint_deferred(), _locked(target.parent):
        if not target.exists():
            os.rename(staging, target)
        else:  # check again: it may have been written into since it was checked
            if not target.is_dir():
                raise UsageError(f"cannot write the report into {target}: it is a file, not a folder; "
                                 "choose a new or empty folder with -o")
            _refuse_foreign(target, target, written)
            os.chmod(staging, stat.S_IMODE(target.stat().st_mode))
            os.rename(target, old)
            try:
                os.rename(staging, target)
            except BaseException:
                os.rename(old, target)
                raise
        _fsync(target.parent)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder`` itself, so no lock file is left behind."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the swap is still whole, only not serialised
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block is done, then deliver it. Only the main thread may set
    signal handlers; elsewhere the block runs as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
        if caught:
            signal.raise_signal(signal.SIGINT)


def _sync(folder: Path) -> None:
    """Flush every file of the new report to disk before it replaces the old one."""
    for root, _, files in os.walk(folder):
        for name in files:
            _fsync(Path(root) / name)
        _fsync(Path(root))


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)
