"""analyze(loaded) -> Report: capture, find blocks, run probes, gather everything as plain data."""

from __future__ import annotations

import math
from typing import Any

from ._recorder import gather_tensors
from .blocks import find_blocks, streams
from .capture import capture
from .inputs import Inputs
from .load import Loaded
from .probes import ProbeContext
from .report import ProbeResult, Report

__all__ = ["analyze"]


def analyze(loaded: Loaded, inputs: Any = None, *, probes: tuple[str, ...] = ("verify",),
            plugins: Any = None) -> Report:
    """Analyse a loaded model (``resprobe.load(...)`` or ``resprobe.Loaded(model, inputs)``).

    ``inputs`` overrides the inputs the source supplied. A source that is a graph already
    (an ExportedProgram) is not run: probes that need to replay it say so in their notes.
    """
    from .plugins import registry

    reg = plugins if plugins is not None else registry()
    inp = Inputs.of(inputs) if inputs is not None else loaded.inputs or Inputs()
    graph = loaded.graph if loaded.graph is not None else capture(loaded.model, inp)
    blocks = find_blocks(graph)
    ctx = ProbeContext(loaded.model, inp, graph, blocks, replayable=loaded.graph is None)
    results = [reg.get("probe", name).run(ctx) for name in probes]
    return Report(
        model=_model(loaded, inp, graph.device),
        graph={"model": graph.model, "nodes": len(graph), "edges": len(graph.edges),
               "capture_seconds": round(graph.seconds, 4), "notes": list(graph.notes)},
        streams=[{"id": s.id, "blocks": list(s.blocks)} for s in streams(blocks)],
        blocks=[_block(b.to_dict(), results) for b in blocks],
        results=results, notes=loaded.notes,
    )


def _block(d: dict[str, Any], results: list[ProbeResult]) -> dict[str, Any]:
    d["metrics"] = {r.probe: r.blocks[d["name"]] for r in results if d["name"] in r.blocks}
    return d


def _model(loaded: Loaded, inp: Inputs, device: str) -> dict[str, Any]:
    params = list(loaded.model.parameters())
    return {
        "source": loaded.source, "class": type(loaded.model).__name__,
        "parameters": sum(p.numel() for p in params), "weights": loaded.weights,
        "description": loaded.description, "inputs": _describe(inp), "device": device,
        "dtype": str(params[0].dtype).replace("torch.", "") if params else None,
    }


def _describe(inp: Inputs) -> list[dict[str, Any]]:
    out = []
    for name, value in inp.named():
        for t in gather_tensors([value], []):
            out.append({"name": name, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""),
                        "elements": math.prod(t.shape)})
    return out
