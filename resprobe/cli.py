"""click commands; the single place that turns resprobe errors into exit codes."""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._cli_compare import compare
from ._cli_report import report
from ._deadline import TimeUp, deadline
from ._version import __version__
from .errors import InputsError, ResprobeError, UsageError, VerificationError
from .objective import NAMES as OBJECTIVES
from .plugins import DISABLE_ENV, Option, Registry
from .probes import DEFAULT_PROBES
from .render.refinement import METRICS

if TYPE_CHECKING:  # the commands import what needs torch when they run: --help and --version do not
    from .graph import Graph
    from .inputs import Inputs
    from .load import Loaded
    from .objective import ObjectiveFn
    from .probes import ProbeContext
    from .report import Report
    from .verify import BlockCheck

__all__ = ["main"]

DEFAULT_SOURCE = "resprobe.examples:digits_resnet"
DTYPES = ("float32", "bfloat16", "float16")  # resprobe.measure.DTYPES, named without importing torch


class _Group(click.Group):
    """Runs a command and maps errors to exit codes: 2 bad input, 1 analysis failed."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with warnings.catch_warnings():
                if not (ctx.obj or {}).get("debug") and "--debug" not in sys.argv[1:2]:
                    warnings.simplefilter("ignore")  # library warnings are not errors: one line each
                return super().invoke(ctx)
        except ResprobeError as err:
            self._fail(ctx, str(err), err.exit_code)
        except TimeUp as err:
            self._fail(ctx, str(err), 2)
        except click.UsageError as err:
            where = f"resprobe {err.ctx.info_name}" if err.ctx and err.ctx.parent else "resprobe"
            self._fail(ctx, f"{err.format_message().rstrip('.')}; see '{where} --help'", 2)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as err:  # noqa: BLE001 - the CLI must never end in a bare traceback
            self._fail(ctx, f"internal error: {type(err).__name__}: {err}", 1)
        finally:
            deadline.stop()

    @staticmethod
    def _fail(ctx: click.Context, message: str, code: int) -> None:
        debug = (ctx.obj or {}).get("debug")
        if debug:
            traceback.print_exc()
        hint = "" if code != 1 or debug else " (--debug shows the traceback)"
        # text from a file (keys, names) must not move the cursor or add lines on the terminal
        shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in message)
        click.echo(f"error: {shown}{hint}", err=True)
        ctx.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="resprobe")
@click.option("--debug", is_flag=True, help="Show the full traceback when something fails.")
@click.option("--disable-plugin", "disabled", multiple=True, metavar="NAME",
              help=f"Do not load this plugin (repeatable; also ${DISABLE_ENV}=a,b).")
@click.pass_context
def main(ctx: click.Context, debug: bool, disabled: tuple[str, ...]) -> None:
    """Find every residual block in a PyTorch model and measure it as a refinement step.

    SOURCE is a zoo model (torchvision:resnet50, timm:convnext_tiny, hf:DIR), a model file
    (state_dict, checkpoint or safetensors with --arch; ExportedProgram, read from its JSON
    graph without running or unpickling anything; pickled module or traced TorchScript only
    with --trust, since loading them runs code from the file), or package.module:callable
    (imports and runs that module). Without SOURCE, a bundled example
    (a small residual network trained on scikit-learn's digits) is used.
    """
    ctx.obj = {"debug": debug, "disabled": disabled}
    if not debug:  # transformers logs through its own logger, not warnings
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _registry(ctx: click.Context) -> Registry:
    root = ctx.find_root()
    if root.obj is None:  # a context made without running main (scripts/cli_reference.py)
        root.obj = {"debug": False, "disabled": ()}
    if "registry" not in root.obj:
        root.obj["registry"] = Registry(root.obj["disabled"])
    reg: Registry = root.obj["registry"]
    return reg


@dataclass(frozen=True)
class _Source:
    """The model to load, as the options every loading command shares give it."""

    source: str
    arch: str | None
    trust: bool
    shapes: tuple[str, ...]
    inputs_file: str | None
    device: str
    seed: int
    meta: bool = False


def source_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command that loads a model shares; the command gets the model's as
    one ``_Source`` (its first argument after the context) and ``quiet``."""
    options = [
        click.argument("source", required=False, default=DEFAULT_SOURCE),
        click.option("--arch", metavar="SOURCE", help="Architecture for a state_dict file: any SOURCE form."),
        click.option("--trust", is_flag=True,
                     help="Allow loading files that run code from themselves: pickled models and "
                          "TorchScript archives."),
        click.option("--input-shape", "shapes", multiple=True, metavar="SHAPE",
                     help="Random example input, e.g. 1x3x224x224 or 1x16:int64; repeat for "
                          "several positional inputs."),
        click.option("--inputs", "inputs_file", metavar="FILE",
                     help="Example inputs saved with torch.save: a tensor, tuple or dict."),
        click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
                     help="Where to run the model (auto: the first GPU when there is one)."),
        click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
                     help="Seed for random weights and random inputs."),
        click.option("--meta", is_flag=True,
                     help="Build the model on the meta device: its structure (blocks, diagram) with no "
                          "weight allocated, for models of any size; nothing is measured. Hugging Face "
                          "configs too big for memory are built so anyway."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                     expose_value=False, is_eager=False, callback=deadline.option,
                     help="Stop with an error when loading and analysing take longer than this "
                          "(default: no limit)."),
        click.option("--quiet", "-q", is_flag=True, help="Print only the result."),
    ]

    @functools.wraps(command)
    def collected(*args: Any, source: str, arch: str | None, trust: bool, shapes: tuple[str, ...],
                  inputs_file: str | None, device: str, seed: int, meta: bool, **kwargs: Any) -> Any:
        return command(*args, _Source(source, arch, trust, shapes, inputs_file, device, seed, meta), **kwargs)

    for option in reversed(options):
        collected = option(collected)
    return collected


_LINES = {  # what starts each phase of the analysis, on stderr: by the label its progress shows
    "verifying": "verifying every block on real values",
    "measuring": "measuring every block: one instrumented forward and backward pass per batch",
    "depth": "measuring the effective depth of each stream",
    "lesions": "deleting blocks one at a time and k at a time (lesions)",
}
_PROBE_PHASES: dict[str, str | None] = {  # probe: the label of its phase (None: no phase of its own)
    "verify": "verifying", "refinement": None, "gradients": None,  # these two read the measurement
    "depth": "depth", "lesion": "lesions",
}


class _Progress:
    """Progress on stderr for the analysis: a line when a phase starts (``phase(label)``,
    which ``ProbeContext.phase`` calls), then, on a terminal, a bar over the steps that
    ``progress(done, total)`` reports (batches, lesions, depth steps), labelled with the phase."""

    def __init__(self, file: Any = None):
        self.file = file or sys.stderr
        self.labels: list[str] = []
        self.bar: Any = None
        self.open = ExitStack()

    def __call__(self, done: int, total: int) -> None:
        if total < 2 or not getattr(self.file, "isatty", bool)():  # in a log the phase's line says it
            return
        if self.bar is None or self.bar.length != total or done < self.bar.pos:
            self._finish()
            label = self.labels[-1] if self.labels else "working"
            self.bar = self.open.enter_context(click.progressbar(length=total, label=label, file=self.file,
                                                                 show_pos=True, show_percent=False))
        self.bar.update(done - self.bar.pos)
        if done >= total:
            self._finish()

    @contextmanager
    def phase(self, label: str) -> Iterator[None]:
        self._finish()
        click.echo(_LINES.get(label, f"running {label}"), file=self.file)
        self.labels.append(label)
        try:
            yield
        finally:
            self._finish()
            self.labels.pop()

    def _finish(self) -> None:
        self.open.close()
        self.bar = None


class _Phased:
    """The plugin registry as ``analyze()`` sees it from the CLI: each probe it gets runs as a
    phase of ``progress`` (``ProbeContext.phase``), labelled by ``_PROBE_PHASES``."""

    def __init__(self, registry: Registry):
        self.registry = registry

    def get(self, kind: str, name: str) -> Any:
        plugin = self.registry.get(kind, name)
        label = _PROBE_PHASES.get(name, name)
        return plugin if kind != "probe" or label is None else _PhasedProbe(plugin, label)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.registry, name)


class _PhasedProbe:
    def __init__(self, probe: Any, label: str):
        self.probe, self.label = probe, label

    def run(self, context: ProbeContext) -> Any:
        with context.phase(self.label):
            return self.probe.run(context)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.probe, name)


class _Session:
    """Loads the model and its inputs for one command, printing progress unless quiet."""

    def __init__(self, ctx: click.Context, quiet: bool):
        self.ctx = ctx
        self.quiet = quiet
        self.inputs_description = ""

    def progress(self) -> _Progress | None:
        """What shows the analysis' phases and steps (None when quiet)."""
        return None if self.quiet else _Progress()

    def plugins(self) -> Registry | _Phased:
        """The registry to analyse with: each probe a phase of ``progress()`` unless quiet."""
        return _registry(self.ctx) if self.quiet else _Phased(_registry(self.ctx))

    def say(self, message: str) -> None:
        if not self.quiet:
            click.echo(message, err=True)

    def prepare(self, src: _Source) -> tuple[Loaded, Inputs]:
        import torch

        from .inputs import Inputs, infer_inputs, load_inputs, parse_shape
        from .load import load

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(src.seed)
            given = load_inputs(src.inputs_file) if src.inputs_file else (
                Inputs(tuple(parse_shape(s) for s in src.shapes)) if src.shapes else None)
        if given is not None:
            self.inputs_description = (f"inputs from {src.inputs_file}" if src.inputs_file
                                       else f"random inputs of shape {', '.join(src.shapes)}")
        self.say(f"loading {src.source}")
        loaded = load(src.source, arch=src.arch, trust=src.trust, plugins=_registry(self.ctx), seed=src.seed,
                      meta=src.meta)
        inputs = given or loaded.inputs
        if inputs is None and loaded.graph is None:
            guess = infer_inputs(loaded.model)
            if guess is None:
                raise InputsError(f"{src.source} supplied no example inputs and none could be inferred "
                                  "from its first layer; pass --input-shape (e.g. 1x3x224x224) "
                                  "or --inputs FILE")
            inputs, how = guess
            self.say(f"inputs: {how}")
            self.inputs_description = how
        elif given is None:
            self.inputs_description = loaded.inputs_description
        loaded, inputs = _to_device(loaded, inputs or Inputs(), src.device)
        return loaded, inputs


def _to_device(loaded: Loaded, inputs: Inputs, device: str) -> tuple[Loaded, Inputs]:
    import torch

    name = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    try:
        target = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device here; use --device cpu or auto")
    if target.type == "cpu" or loaded.graph is not None or loaded.weights == "none":
        return loaded, inputs
    return replace(loaded, model=loaded.model.to(target)), inputs.to(target)


class _WithProbeOptions(click.Command):
    """``analyze``: its own parameters, then the options the probes declare (``Option``, the
    probes' ``options``), read from the plugin registry when the command line is parsed or
    its help shown. An option whose flag or name is taken already (by the command or a probe
    before it: the default probes first, then the others by name) is left out."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        own = super().get_params(ctx)  # self.params, then --help
        registry = _registry(ctx)
        obj = ctx.find_root().obj  # one list per run: parsing and --help read the same
        if "probe_params" not in obj:
            obj["probe_params"] = _probe_params(registry, self.params)
        probe: list[click.Parameter] = obj["probe_params"]
        return [*own[:len(self.params)], *probe, *own[len(self.params):]]


def _probe_params(registry: Registry, taken: list[click.Parameter]) -> list[click.Parameter]:
    names = {p.name for p in taken}
    flags = {f for p in taken for f in p.opts}
    infos = sorted(registry.infos_of("probe"), key=lambda p: (
        DEFAULT_PROBES.index(p.name) if p.name in DEFAULT_PROBES else len(DEFAULT_PROBES), p.name))
    params: list[click.Parameter] = []
    for info in infos:  # a probe missing a dependency still shows its options: --help stays the same
        for option in getattr(info.obj, "options", ()) if info.obj is not None else ():
            if option.name in names or option.flag in flags:
                continue
            params.append(_click_option(option))
            names.add(option.name)
            flags.add(option.flag)
    return params


def _click_option(option: Option) -> click.Option:
    """The click option for a probe's ``Option``."""
    if option.type is bool and not option.multiple:
        return click.Option([option.flag, option.name], is_flag=True, default=bool(option.default),
                            help=option.help, metavar=option.metavar, show_default=option.show_default)
    return click.Option([option.flag, option.name], type=option.type, default=option.default,
                        multiple=option.multiple, help=option.help, metavar=option.metavar,
                        show_default=option.show_default)


@main.command(cls=_WithProbeOptions)
@source_options
@click.option("--out", "-o", default="resprobe-report", show_default=True, metavar="DIR",
              help="Directory to write the report into.")
@click.option("--format", "formats", multiple=True, default=("json", "html", "md"), show_default=True,
              help="Exporter plugin(s) to write the report with (json, html, md, svg; repeatable, replaces "
                   "the default list).")
@click.option("--probe", "probes", multiple=True, metavar="[+|-]NAME",
              help=f"Probe plugin(s): +NAME adds one to the default list ({', '.join(DEFAULT_PROBES)}), "
                   "-NAME leaves one out, a plain NAME replaces the list (repeatable), e.g. --probe "
                   "+attribution; see `resprobe plugins`.")
@click.option("--data", metavar="PATH",
              help="Measure on this data instead of the example inputs: a torch.save file (tensor, "
                   "(inputs, targets) or dict of named inputs), an image folder (sub-folders = "
                   "classes), or a .txt file, one sample per line, for a source with a tokenizer.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Samples per batch when reading --data.")
@click.option("--max-samples", type=click.IntRange(min=1), metavar="N",
              help="Use at most N samples of --data.")
@click.option("--objective", default="auto", show_default=True, metavar="NAME|module:callable",
              help=f"What gradients are taken of: {', '.join(OBJECTIVES)}, or package.module:callable "
                   "returning one loss per sample from (output, inputs, targets).")
@click.option("--dtype", type=click.Choice(list(DTYPES)), default="float32", show_default=True,
              help="Run the model under autocast in this dtype (statistics stay float32).")
@click.option("--train", is_flag=True,
              help="Measure in train mode (dropout, batch statistics); buffers are restored afterwards.")
@click.pass_context
def analyze(ctx: click.Context, /, src: _Source, quiet: bool, out: str, formats: tuple[str, ...],
            probes: tuple[str, ...], data: str | None, batch_size: int, max_samples: int | None,
            objective: str, dtype: str, train: bool, **probe_options: Any) -> None:
    """Analyse SOURCE and write a report directory (report.json, report.html, report.md).

    Captures one forward pass, finds every residual block and stream, checks each block on
    real values, then measures every block as a refinement step and the gradient flow along
    each stream (one instrumented forward + backward per batch), the effective depth and what
    deleting each block does, and writes everything to DIR.
    SOURCE: torchvision:NAME, timm:NAME, hf:DIR, a model file, or package.module:callable
    (default: the bundled example).
    """
    from ._cli_text import summary
    from ._distributed import launched, rank, spread
    from .data import example_data, load_data
    from .measure import Settings
    from .report import check_output_dir

    ctx.with_resource(launched(src.device))  # under torchrun: one process group for the analysis,
    ctx.with_resource(spread())  # over whose processes the batches are spread
    first = rank() == 0  # the process that writes and speaks
    if first:
        check_output_dir(out, _registry(ctx))  # before the long analysis, not after it
    given, probes = probes, _probe_list(probes)
    session = _Session(ctx, quiet or not first)
    loaded, inputs = session.prepare(src)
    batches = (load_data(data, inputs, tokenizer=loaded.tokenizer, batch_size=batch_size,
                         max_samples=max_samples) if data else
               example_data(inputs, session.inputs_description or "the source's example inputs"))
    settings = Settings(dtype=dtype, train=train).with_options(probe_options)  # probe_options: each Option
    session.say(f"capturing one forward pass of {type(loaded.model).__name__} and finding blocks")
    report = run_analysis(loaded, inputs, probes=probes, plugins=session.plugins(), data=batches,
                          objective=_objective(objective), settings=settings, progress=session.progress())
    deadline.stop()  # the report is written whole, never cut short
    if not first:
        return
    written = report.save(out, formats, plugins=_registry(ctx))
    click.echo(summary(report))
    for path in written:
        click.echo(f"wrote {path}")
    named = [p.lstrip("+") for p in given if not p.startswith("-")]
    failed = [r.probe for r in report.results if r.summary.get("failed") and r.probe in named]
    if failed:
        from .errors import AnalysisError

        raise AnalysisError(f"probe(s) {', '.join(failed)} failed (see the notes); the report holds the "
                            "other probes' numbers")
    check = report.result("verify")
    if check and check.summary.get("passed", 0) < check.summary.get("checked", 0):
        from .errors import VerificationError

        raise VerificationError(f"{check.summary['checked'] - check.summary['passed']} block(s) failed "
                                "the numerical check; see the verify results in the report")


def _probe_list(given: tuple[str, ...]) -> tuple[str, ...]:
    """``--probe``: plain names replace the default list; ``+NAME`` adds, ``-NAME`` removes."""
    plain = [p for p in given if not p.startswith(("+", "-"))]
    chosen = list(plain or DEFAULT_PROBES)
    for p in given:
        if p.startswith("+") and p[1:] not in chosen:
            chosen.append(p[1:])
        elif p.startswith("-"):
            if p[1:] not in chosen:
                raise UsageError(f"--probe {p}: {p[1:]!r} is not in the list ({', '.join(chosen)})")
            chosen.remove(p[1:])
    return tuple(chosen)


def _objective(spec: str) -> str | ObjectiveFn:
    """A built-in objective name, or the callable named by package.module:callable (the
    analysis turns either into a ``resprobe.Objective``, once: ``ProbeContext``)."""
    if spec in OBJECTIVES or ":" not in spec:
        return spec
    from .load import resolve_callable

    fn: ObjectiveFn = resolve_callable(spec, "objective")
    return fn


@main.command()
@source_options
@click.option("--json", "as_json", is_flag=True, help="Print the blocks as a JSON list.")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Replay the forward pass and check each block numerically "
                   "(join output == skip + branch).")
@click.pass_context
def blocks(ctx: click.Context, src: _Source, quiet: bool, as_json: bool, verify: bool) -> None:
    """List the residual blocks of SOURCE.

    SOURCE: torchvision:NAME, timm:NAME, hf:DIR, a model file, or package.module:callable
    (default: the bundled example). See resprobe --help.
    """
    from ._cli_text import block_json, block_table
    from .blocks import find_blocks

    session = _Session(ctx, quiet)
    loaded, inputs = session.prepare(src)
    graph = _graph(session, loaded, inputs)
    found = find_blocks(graph)
    checks: dict[str, BlockCheck] = {}
    problem: VerificationError | None = None
    if verify and graph.device != "meta" and loaded.graph is None:
        session.say(f"verifying {len(found)} block(s) on real values")
        try:
            checks = {c.name: c for c in verify_blocks(loaded.model, inputs, graph, found, strict=False)}
        except VerificationError as err:  # the replay took another path: the table still shows
            problem = err
    if as_json:
        click.echo(json.dumps([block_json(b, checks) for b in found], indent=2))
    else:
        click.echo(block_table(graph, found, checks, loaded.notes))
    bad = [c for c in checks.values() if not c.ok]
    if bad:
        problem = VerificationError(f"{len(bad)} block(s) failed the numerical check (marked in the "
                                    f"table), first {bad[0].name!r}: {bad[0].detail}")
    if problem is not None:
        raise problem


@main.command()
@source_options
@click.option("--output", "-o", required=True, metavar="FILE",
              help="Where to write: .json (the graph), .dot/.gv (Graphviz source), .svg or .png.")
@click.option("--view", type=click.Choice(["refinement", "ops"]), default="refinement", show_default=True,
              help="refinement: each stream a spine with its blocks as steps; ops: every recorded op.")
@click.option("--fold/--no-fold", default=None,
              help="refinement: fold repeated blocks into one box (default: above 24 blocks a stream).")
@click.option("--fold-min", type=click.IntRange(min=2), default=3, show_default=True,
              help="refinement: fold runs of at least this many repeats.")
@click.option("--color-by", type=click.Choice(list(METRICS)), default="update_ratio", show_default=True,
              help="refinement: the metric that colours the blocks (with --measure).")
@click.option("--measure", is_flag=True,
              help="refinement: measure the blocks first (refinement and gradients probes) to show "
                   "their numbers.")
@click.option("--collapse-depth", type=click.IntRange(min=1), metavar="D",
              help="ops: one box per module at depth D (layer1.0 is depth 2) instead of its ops.")
@click.option("--collapse", "collapse_modules", multiple=True, metavar="MODULE",
              help="ops: one box for this module instead of its ops (repeatable), e.g. --collapse layer1.")
@click.pass_context
def graph(ctx: click.Context, src: _Source, quiet: bool, output: str, view: str, fold: bool | None,
          fold_min: int, color_by: str, measure: bool, collapse_depth: int | None,
          collapse_modules: tuple[str, ...]) -> None:
    """Draw SOURCE: its residual streams (refinement view) or its captured ops; write FILE.

    SOURCE: torchvision:NAME, timm:NAME, hf:DIR, a model file, or package.module:callable
    (default: the bundled example). See resprobe --help.
    """
    from .blocks import find_blocks
    from .render.dot import graph_dot, render
    from .render.refinement import refinement_dot

    suffix = Path(output).suffix.lower()
    if suffix not in (".json", ".dot", ".gv", ".svg", ".png"):
        raise UsageError(f"cannot write {output!r}: use a .json, .dot, .gv, .svg or .png file name")
    session = _Session(ctx, quiet)
    loaded, inputs = session.prepare(src)
    g = _graph(session, loaded, inputs)
    if suffix == ".json":
        Path(output).write_text(json.dumps(g.to_dict(), indent=2) + "\n", encoding="utf-8")
        click.echo(f"wrote {output} ({g.summary()})")
        return
    if view == "ops":
        dot = graph_dot(g, find_blocks(g), collapse=collapse_depth, modules=collapse_modules)
    else:
        probes: tuple[str, ...] = ()
        if measure and loaded.graph is None:
            probes = ("refinement", "gradients") + (("lesion",) if color_by == "lesion" else ())
        report = run_analysis(replace(loaded, graph=g) if loaded.graph is None and not measure else loaded,
                              inputs, probes=probes, plugins=session.plugins(), progress=session.progress())
        dot = refinement_dot(report, color_by=color_by, fold=fold, fold_min=fold_min)
    if suffix in (".dot", ".gv"):
        Path(output).write_text(dot, encoding="utf-8")
    else:
        Path(output).write_bytes(render(dot, suffix[1:]))
    click.echo(f"wrote {output} ({g.summary()})")


@main.command()
@click.pass_context
def plugins(ctx: click.Context) -> None:
    """List every installed plugin: its kind, distribution and status."""
    infos = sorted(_registry(ctx).infos, key=lambda p: (p.kind, p.name))
    rows = [("name", "kind", "distribution", "status")] + [
        (p.name, p.kind, p.distribution, p.status + (f" ({p.detail})" if p.detail else "")) for p in infos]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[3])


def run_analysis(*args: Any, **kwargs: Any) -> Report:
    """``resprobe.analyze``, imported when a command runs: ``--help`` does not import torch."""
    from .analyze import analyze

    return analyze(*args, **kwargs)


def verify_blocks(*args: Any, **kwargs: Any) -> list[BlockCheck]:
    """``resprobe.verify_blocks``, imported when ``blocks`` runs."""
    from .verify import verify_blocks

    return verify_blocks(*args, **kwargs)


def _graph(session: _Session, loaded: Loaded, inputs: Inputs) -> Graph:
    from .capture import capture

    if loaded.graph is not None:
        return loaded.graph
    session.say(f"capturing one forward pass of {type(loaded.model).__name__}")
    return capture(loaded.model, inputs)


main.add_command(report)
main.add_command(compare)
