"""``resprobe compare A B``: two reports side by side, printed or written as compare.json/.md/.html."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # imported when the command runs: --help stays light
    from .compare import Comparison

__all__ = ["compare", "write_comparison"]

FILES = ("compare.json", "compare.md", "compare.html")


@click.command("compare")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option("--out", "-o", metavar="DIR",
              help="Also write compare.json, compare.md and compare.html into DIR (made if missing; "
                   "those three files are replaced, nothing else there is touched).")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON instead of the summary.")
@click.option("--threshold", type=click.FloatRange(min=0), default=0.1, show_default=True,
              help="The smallest relative change of a block's update ratio or branch gain the summary "
                   "names.")
def compare(a: str, b: str, out: str | None, as_json: bool, threshold: float) -> None:
    """Compare two reports: the same blocks' numbers in A and B and what changed.

    A and B are report.json files or the report folders `resprobe analyze -o DIR` writes,
    e.g. two checkpoints of one model, or before and after fine-tuning. Blocks are matched by
    name; the summary says what changed (roles, the largest changes of update ratio and branch
    gain, effective depth, blocks in one report only) and what else differs between the two
    measurements (data, inputs, objective, settings).
    """
    from .compare import compare_reports
    from .render.compare import comparison_text

    comparison = compare_reports(a, b, threshold=threshold)
    text = _json(comparison) if as_json else comparison_text(comparison)
    written = write_comparison(comparison, out) if out is not None else []
    click.echo(text)
    for path in written:
        click.echo(f"wrote {path}", err=as_json)  # stdout holds only the JSON


def _json(comparison: Comparison) -> str:
    return json.dumps(comparison.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)


def write_comparison(comparison: Comparison, directory: str | os.PathLike[str]) -> list[Path]:
    """Write compare.json, compare.md and compare.html into ``directory``, each file whole (written
    beside itself, then renamed into place); returns the paths written."""
    from ._save import write_file_whole
    from .errors import UsageError
    from .render.compare import comparison_html, comparison_markdown

    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"cannot write the comparison into {directory}: it is a file, not a folder; "
                         "choose a folder with -o")
    texts = (_json(comparison) + "\n",
             comparison_markdown(comparison), comparison_html(comparison))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return [write_file_whole(folder / name, text) for name, text in zip(FILES, texts)]
    except OSError as err:
        raise UsageError(f"cannot write the comparison into {directory} ({err.strerror or err}); "
                         "choose another folder with -o") from None
