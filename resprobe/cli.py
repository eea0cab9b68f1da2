"""click commands; the single place that turns resprobe errors into exit codes."""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

import click

from ._version import __version__
from .blocks import Block, find_blocks, streams
from .capture import capture
from .errors import InputsError, ResprobeError
from .inputs import Inputs, parse_shape
from .load import load
from .verify import BlockCheck, verify_blocks

__all__ = ["main"]

DEFAULT_SOURCE = "resprobe.examples:digits_resnet"


class _Group(click.Group):
    """Runs a command and maps errors to exit codes: 2 bad input, 1 analysis failed."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ResprobeError as err:
            self._fail(ctx, str(err), err.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as err:  # noqa: BLE001 - the CLI must never end in a bare traceback
            self._fail(ctx, f"internal error: {type(err).__name__}: {err}", 1)

    @staticmethod
    def _fail(ctx: click.Context, message: str, code: int) -> None:
        if (ctx.obj or {}).get("debug"):
            traceback.print_exc()
        hint = "" if code != 1 or (ctx.obj or {}).get("debug") else " (--debug shows the traceback)"
        click.echo(f"error: {message}{hint}", err=True)
        ctx.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="resprobe")
@click.option("--debug", is_flag=True, help="Show the full traceback when something fails.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Find every residual block in a PyTorch model and measure it as a refinement step."""
    ctx.obj = {"debug": debug}


@main.command()
@click.argument("source", required=False, default=DEFAULT_SOURCE)
@click.option("--json", "as_json", is_flag=True, help="Print the blocks as a JSON list.")
@click.option("--input-shape", "shapes", multiple=True, metavar="SHAPE",
              help="Random example input, e.g. 1x3x224x224 or 1x16:int64; repeat for several "
                   "positional inputs. Overrides inputs the source supplies.")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Replay the forward pass and check each block numerically "
                   "(join output == skip + branch).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for random inputs.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the result.")
def blocks(source: str, as_json: bool, shapes: tuple[str, ...], verify: bool, seed: int,
           quiet: bool) -> None:
    """List the residual blocks of SOURCE.

    SOURCE is package.module:callable; the callable returns an nn.Module or a tuple
    (nn.Module, example_inputs). Without SOURCE, a bundled example residual network is used.
    """
    import torch

    def say(msg: str) -> None:
        if not quiet:
            click.echo(msg, err=True)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        given = Inputs(tuple(parse_shape(s) for s in shapes)) if shapes else None
    say(f"loading {source}")
    loaded = load(source)
    inputs = given or loaded.inputs
    if inputs is None:
        raise InputsError(f"{source} supplied no example inputs; pass --input-shape, "
                          "e.g. --input-shape 1x3x224x224")
    say(f"capturing one forward pass of {type(loaded.model).__name__}")
    graph = capture(loaded.model, inputs)
    found = find_blocks(graph)
    checks: dict[str, BlockCheck] = {}
    if verify and graph.device != "meta":
        say(f"verifying {len(found)} block(s) on real values")
        checks = {c.name: c for c in verify_blocks(loaded.model, inputs, graph, found)}
    if as_json:
        click.echo(json.dumps([_block_json(b, checks) for b in found], indent=2))
    else:
        click.echo(_table(graph.model, graph.summary(), found, checks, graph.notes))


def _block_json(b: Block, checks: dict[str, BlockCheck]) -> dict[str, Any]:
    d = b.to_dict()
    d["verified"] = checks[b.name].ok if b.name in checks else None
    return d


def _table(model: str, summary: str, found: list[Block], checks: dict[str, BlockCheck],
           notes: tuple[str, ...]) -> str:
    residual = [b for b in found if b.is_residual]
    lines = [f"{model}: {summary}; {len(residual)} residual block(s) on "
             f"{len(streams(found))} stream(s), {len(found) - len(residual)} concat skip(s)"
             + (f"; verified {sum(c.ok for c in checks.values())}/{len(checks)}" if checks else "")]
    rows = [("stream", "step", "block", "skip", "join", "branch")] + [
        ("-" if b.stream is None else str(b.stream), "-" if b.step is None else str(b.step),
         b.name, b.skip_kind, b.join_kind, _short_modules(b)) for b in found]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[5])
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)


def _short_modules(b: Block, limit: int = 60) -> str:
    prefix = b.name.split("#")[0] + "."
    names = [m[len(prefix):] if m.startswith(prefix) else m for m in b.branch_modules]
    text = " ".join(names)
    return text if len(text) <= limit else text[: limit - 1] + "…"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
