"""analyze(loaded) -> Report: capture, find blocks, run probes, gather everything as plain data."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from torch import nn

from ._recorder import gather_tensors
from .blocks import find_blocks, streams
from .capture import capture
from .data import Data, example_data, load_data
from .errors import UsageError
from .inputs import Inputs
from .load import Loaded, as_loaded
from .measure import Settings
from .probes import DEFAULT_PROBES, ProbeContext
from .report import (
    BlockMetrics,
    BlockReport,
    GraphInfo,
    InputInfo,
    ModelInfo,
    Numbers,
    ProbeResult,
    Report,
    StreamInfo,
)

__all__ = ["DEFAULT_PROBES", "analyze"]



def analyze(model: nn.Module | Loaded, inputs: Any = None, *, probes: tuple[str, ...] = DEFAULT_PROBES,
            plugins: Any = None, data: Data | str | None = None, objective: Any = None,
            settings: Settings | None = None,
            progress: Callable[[int, int], None] | None = None) -> Report:
    """Analyse a model: an ``nn.Module`` with its example ``inputs`` (a tensor, a tuple of
    positional arguments, a dict of keyword arguments or ``Inputs``), or a loaded source
    (``resprobe.load(...)``), whose own inputs ``inputs`` overrides. ``data`` is what the measurement
    probes run on: a ``Data`` (``resprobe.load_data``), a path for ``load_data``, or None for
    the example inputs. ``objective`` is ``"auto"`` (default), another name in
    ``resprobe.objective.NAMES``, or a callable ``(output, inputs, targets) -> per-sample
    losses``. ``progress(done, total)`` is called after each batch. A source that is a graph
    already (an ExportedProgram) is not run: probes that need to run it say so in their notes.
    """
    from .plugins import registry

    reg = plugins if plugins is not None else registry()
    loaded = as_loaded(model, inputs)
    inp = loaded.inputs or Inputs()
    settings = settings or Settings()
    graph = loaded.graph if loaded.graph is not None else capture(loaded.model, inp, train=settings.train)
    blocks = find_blocks(graph)
    if isinstance(data, str):
        data = load_data(data, inp, tokenizer=loaded.tokenizer)
    elif data is None:
        data = example_data(inp, "the example inputs given" if inputs is not None
                            else loaded.inputs_description or "the source's example inputs")
    ctx = ProbeContext(loaded.model, inp, graph, blocks, replayable=loaded.graph is None, data=data,
                       objective=objective, settings=settings, progress=progress, tokenizer=loaded.tokenizer)
    results = [_finite(_unchecked(_run_probe(reg.get("probe", name), name, ctx))) for name in probes]
    measured = ctx.cache.get("measurement")
    return Report(
        model=_model(loaded, inp, graph.device, ctx.settings.dtype),
        graph=GraphInfo(graph.model, len(graph), len(graph.edges), round(graph.seconds, 4), graph.notes),
        streams=tuple(StreamInfo(s.id, s.blocks) for s in streams(blocks)),
        blocks=tuple(_block({**b.to_dict(), "fork_module": graph[b.fork].module}, results) for b in blocks),
        results=tuple(results), notes=loaded.notes,
        objective=None if measured is None else Numbers(_clean(measured.objective, "", "", {})),
        data=None if measured is None else Numbers(_clean(measured.data, "", "", {})),
    )


def _unchecked(result: ProbeResult) -> ProbeResult:
    """verify: a block whose values are NaN or inf (error NaN) cannot be checked, so it is
    neither passed nor failed: ``ok`` null, left out of ``checked``, and a note says so."""
    nan = [k for k, v in result.blocks.items() if result.probe == "verify" and v.get("ok") is False
           and isinstance(v.get("error"), float) and math.isnan(v["error"])]
    if not nan:
        return result
    blocks = {k: ({**v, "ok": None, "detail": "not checked: its values are NaN or inf"} if k in nan else v)
              for k, v in result.blocks.items()}
    summary = {**result.summary, "checked": result.summary.get("checked", 0) - len(nan),
               "unchecked": len(nan)}
    note = f"{len(nan)} block(s) not checked, their values are NaN or inf: {_few(nan)}"
    return replace(result, summary=summary, blocks=blocks, notes=(*result.notes, note))


def _finite(result: ProbeResult) -> ProbeResult:
    """``result`` with every NaN or inf written as None (JSON has neither), and one note that
    says where."""
    places: dict[str, list[str]] = {}
    summary = _clean(result.summary, "", "the summary", places)
    blocks = {name: _clean(v, "", name, places) for name, v in result.blocks.items()}
    if not places:
        return result
    shown = [f"{metric} in {_few(where)}" for metric, where in list(places.items())[:3]]
    more = f"; and {len(places) - 3} more metric(s)" if len(places) > 3 else ""
    note = (f"{result.probe}: non-finite values written as null: {'; '.join(shown)}{more}; "
            "the model produced NaN or inf")
    return replace(result, summary=summary, blocks=blocks, notes=(*result.notes, note))


def _clean(value: Any, path: str, where: str, places: dict[str, list[str]]) -> Any:
    """``value`` with non-finite floats replaced by None; each one's key path is recorded."""
    if isinstance(value, float) and not math.isfinite(value):
        seen = places.setdefault(path or "value", [])
        if where not in seen:
            seen.append(where)
        return None
    if isinstance(value, Mapping):
        return {k: _clean(v, f"{path}.{k}" if path else str(k), where, places) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        cleaned = [_clean(v, path, where, places) for v in value]
        return tuple(cleaned) if isinstance(value, tuple) else cleaned
    return value


def _few(names: list[str], shown: int = 3) -> str:
    """The first few names, then how many more."""
    head = ", ".join(names[:shown])
    return head + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _run_probe(probe: Any, name: str, ctx: ProbeContext) -> ProbeResult:
    """One probe's result; a probe that fails leaves a ``failed: ...`` note (the other probes'
    numbers stay) instead of ending the analysis. Bad input from the user still raises."""
    try:
        result: ProbeResult = probe.run(ctx)
        return result
    except UsageError:
        raise
    except Exception as err:  # noqa: BLE001 - one probe must not take the others with it
        text = str(err).strip().splitlines()
        why = f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__
        return ProbeResult(name, {"measured": 0, "failed": True}, {}, (f"failed: {name}: {why}",))


def _block(d: dict[str, Any], results: list[ProbeResult]) -> BlockReport:
    metrics = BlockMetrics({r.probe: r.blocks[d["name"]] for r in results if d["name"] in r.blocks})
    refinement = metrics.refinement
    return BlockReport.from_dict({**d, "metrics": metrics,
                                  "label": None if refinement is None else refinement.label})


def _model(loaded: Loaded, inp: Inputs, device: str, dtype: str) -> ModelInfo:
    params = list(loaded.model.parameters())
    return ModelInfo(
        source=loaded.source, class_name=type(loaded.model).__name__,
        parameters=sum(p.numel() for p in params), weights=loaded.weights,
        description=loaded.description, seed=loaded.seed, inputs=_describe(inp), device=device,
        dtype=str(params[0].dtype).replace("torch.", "") if params else None,
        autocast=None if dtype == "float32" else dtype,
    )


def _describe(inp: Inputs) -> tuple[InputInfo, ...]:
    return tuple(InputInfo(name, tuple(t.shape), str(t.dtype).replace("torch.", ""), math.prod(t.shape))
                 for name, value in inp.named() for t in gather_tensors([value], []))
