"""Saving a report folder whole: a report set is written into a hidden folder beside the
target and renamed into place, so the folder always holds one complete report; a folder that
holds anything no exporter writes is refused, never replaced."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from .errors import UsageError
from .plugins import Registry, registry

__all__ = ["check_output_dir", "save_whole", "write_file_whole"]


# Written by file browsers when a folder is opened, not by users; replaced with the folder.
_LITTER = frozenset({".DS_Store", "Thumbs.db"})


def check_output_dir(directory: str | Path, plugins: Registry | None = None) -> None:
    """Raise ``UsageError`` unless a report can be saved into ``directory``: it is missing,
    empty or holds only what resprobe's exporters write (an earlier report), and the folder
    around it can be written (the report is put in place by renaming there). Leaves nothing
    behind; call it before a long analysis."""
    plugins = plugins if plugins is not None else registry()
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


def _written(plugins: Registry) -> tuple[str, ...]:
    """What the installed exporters write (their ``writes``: paths inside the report folder,
    ``*`` patterns allowed), the built-in ones included (they are entry points like any other)."""
    found = plugins.of_kind("exporter").values()
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


def save_whole(report: Any, directory: str | Path, formats: tuple[str, ...],
               plugins: Registry | None = None) -> list[Path]:
    """Write ``report`` with each exporter in ``formats`` into ``directory``; returns the paths
    written. Every exporter writes into a fresh hidden folder beside the target, which then
    takes the target's place whole; the hidden folder is removed whatever happens."""
    reg = plugins if plugins is not None else registry()
    exporters = [reg.get("exporter", f) for f in formats]
    check_output_dir(directory, reg)
    directory, written = Path(directory), _written(reg)
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


def write_file_whole(path: Path, text: str) -> Path:
    """Write ``text`` to a new hidden file beside ``path`` (its mode from the umask, like any new
    file), then rename it over ``path``: ``path`` holds the old text or the new, never a part.
    Raises ``OSError`` when it cannot."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    f = open(temp, "x", encoding="utf-8", newline="\n")  # noqa: SIM115 - closed below, before the rename
    try:
        with f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


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
