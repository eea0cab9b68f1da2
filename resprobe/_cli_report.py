"""``resprobe report``: a watched training run (resprobe-run.jsonl) as run-report.html and run-report.md."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # the command imports what it needs when it runs: --help stays cheap
    from .runlog import Run

__all__ = ["report"]

_FILES = {"html": "run-report.html", "md": "run-report.md"}


@click.command("report")
@click.argument("run_dir", metavar="RUN_DIR")
@click.option("--out", "-o", metavar="DIR", help="Folder to write the report into (default: RUN_DIR itself).")
@click.option("--format", "formats", multiple=True, type=click.Choice(list(_FILES)), default=tuple(_FILES),
              show_default=True, help="Report formats to write (repeatable).")
@click.option("--at", "at", multiple=True, type=click.IntRange(min=0), metavar="STEP",
              help="A measured step to draw the gradient norm along depth at (repeatable; default: the "
                   "first, middle and last measured step).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the paths written.")
def report(run_dir: str, out: str | None, formats: tuple[str, ...], at: tuple[int, ...], quiet: bool) -> None:
    """Write the report of a training run recorded by resprobe.watch.

    RUN_DIR is the log_dir given to resprobe.watch (it holds resprobe-run.jsonl), or that file.
    Writes run-report.html (one self-contained page: heatmaps of the main metrics per block and
    step, effective depth over training, the gradient norm along depth, role changes) and
    run-report.md, each replaced whole.
    """
    from .render.run import run_html, run_markdown
    from .render.runparts import summary_lines

    run = _read(run_dir)
    _check_steps(run, at)
    target = _target(run_dir, out)
    render = {"html": run_html, "md": run_markdown}
    texts = {f: render[f](run, list(at) or None) for f in dict.fromkeys(formats)}  # all, before writing any
    written = [_write(target / _FILES[f], text) for f, text in texts.items()]
    if not quiet:
        for line in summary_lines(run):
            click.echo(_printable(line))
    for path in written:
        click.echo(f"wrote {path}")


def _read(run_dir: str) -> Run:
    from .errors import SourceError
    from .runlog import read_run

    try:
        return read_run(run_dir)
    except UnicodeDecodeError:
        raise SourceError(f"{run_dir} is not a text file; pass the log_dir given to resprobe.watch "
                          "(it holds resprobe-run.jsonl)") from None
    except OSError as err:
        raise SourceError(f"cannot read the run record in {run_dir} ({err.strerror or err}); pass the "
                          "log_dir given to resprobe.watch") from None


def _check_steps(run: Run, at: tuple[int, ...]) -> None:
    from .errors import UsageError
    from .render.runparts import measured

    steps = {s.step for s in run.steps}
    for k in at:
        if k not in steps:
            raise UsageError(f"--at {k}: step {k} was not measured in this run (measured: {measured(run)}); "
                             "pass a measured step")


def _target(run_dir: str, out: str | None) -> Path:
    """The folder to write into, made when missing."""
    from .errors import UsageError

    given = Path(run_dir)
    target = Path(out) if out is not None else (given if given.is_dir() else given.parent)
    if target.exists() and not target.is_dir():
        raise UsageError(f"cannot write the report into {target}: it is a file, not a folder; "
                         "choose a folder with -o")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the folder {target} ({err.strerror or err}); choose another folder "
                         "with -o") from None
    return target


def _write(path: Path, text: str) -> Path:
    """Write ``path`` whole or not at all (a temporary file beside it, renamed over it)."""
    from ._save import write_file_whole
    from .errors import UsageError

    try:
        return write_file_whole(path, text)
    except OSError as err:
        raise UsageError(f"cannot write {path} ({err.strerror or err}); "
                         "choose another folder with -o") from None


def _printable(line: str) -> str:
    """Text from the record (the model's name) must not move the cursor or add lines."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in line)
