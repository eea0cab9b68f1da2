"""ExportedProgram files (``torch.export.save``): their FX graph read as a Graph, never run."""

from __future__ import annotations

import operator
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .errors import SourceError
from .graph import Graph, Node
from .inputs import Inputs
from .load import Loaded

__all__ = ["exported_graph", "load_exported"]


def load_exported(path: Path) -> Loaded:
    """Read an ExportedProgram; its graph is the capture (the program is not executed)."""
    try:
        program = torch.export.load(str(path))
    except Exception as err:
        raise SourceError(f"{path} is a corrupt ExportedProgram ({type(err).__name__}: {err})") from err
    graph = exported_graph(program)
    example = getattr(program, "example_inputs", None)
    inputs = Inputs(tuple(example[0]), dict(example[1])) if example else None
    return Loaded(program.module(), inputs, "unknown", f"ExportedProgram {path.name}", graph=graph,
                  notes=("captured from the ExportedProgram's own graph (ATen ops); it was not run",))


def exported_graph(program: Any) -> Graph:
    """Turn an ``ExportedProgram``'s FX graph into a ``Graph`` (module paths from its metadata)."""
    start = time.perf_counter()
    sig = program.graph_signature
    params: dict[str, str] = dict(sig.inputs_to_parameters)
    buffers: dict[str, str] = {**dict(sig.inputs_to_buffers),
                               **dict(getattr(sig, "inputs_to_lifted_tensor_constants", {}))}
    ids: dict[str, int] = {}
    names: dict[str, int] = {}
    nodes: list[Node] = []
    outputs: list[int] = []
    for fx in program.graph.nodes:
        if fx.op == "placeholder" and fx.name not in params and fx.name not in buffers:
            ids[fx.name] = len(nodes)
            nodes.append(Node(len(nodes), f"input.{fx.name}", "input", "", **_meta(fx)))
        elif fx.op == "call_function" and fx.target is operator.getitem:
            src = fx.args[0]
            if getattr(src, "name", None) in ids:
                ids[fx.name] = ids[src.name]  # an element of a multi-output op: same producer
        elif fx.op == "call_function":
            ids[fx.name] = len(nodes)
            nodes.append(_node(fx, len(nodes), ids, params, buffers, names))
        elif fx.op == "output":
            outputs = [ids[a.name] for a in _fx_args(fx.args) if a.name in ids]
    return Graph(
        nodes=tuple(nodes), inputs=tuple(n.id for n in nodes if n.is_input),
        outputs=tuple(dict.fromkeys(outputs)), model=_model_name(program),
        modules=_modules(program), param_sizes={n: int(t.numel()) for n, t in program.state_dict.items()},
        notes=("graph read from an ExportedProgram (ATen ops, module paths from its metadata)",),
        device="cpu", seconds=time.perf_counter() - start,
    )


def _node(fx: Any, nid: int, ids: dict[str, int], params: dict[str, str], buffers: dict[str, str],
          names: dict[str, int]) -> Node:
    op = str(fx.target)
    module = _module_path(fx)
    short = op.split(".")[1].strip("_") if op.startswith("aten.") else op.rsplit(".", 1)[-1]
    base = f"{module}.{short}" if module else short
    k = names.get(base, 0)
    names[base] = k + 1
    args = _fx_args(list(fx.args) + list(fx.kwargs.values()))
    return Node(
        nid, base if k == 0 else f"{base}_{k}", op, module, 0,
        inputs=tuple(ids[a.name] for a in args if a.name in ids),
        params=tuple(params[a.name] for a in args if a.name in params),
        buffers=tuple(buffers[a.name] for a in args if a.name in buffers),
        consts=tuple(a for a in fx.args if type(a) in (int, float)),
        inplace=op.startswith("aten.") and op.split(".")[1].endswith("_"),
        **_meta(fx),
    )


def _fx_args(values: Any) -> list[Any]:
    out: list[Any] = []
    for v in values if isinstance(values, (list, tuple)) else [values]:
        if isinstance(v, (list, tuple)):
            out += _fx_args(v)
        elif hasattr(v, "op") and hasattr(v, "name"):
            out.append(v)
    return out


def _meta(fx: Any) -> dict[str, Any]:
    val = fx.meta.get("val")
    if isinstance(val, (list, tuple)):
        val = next((v for v in val if isinstance(v, Tensor)), None)
    if isinstance(val, Tensor):
        return {"shape": tuple(int(d) for d in val.shape), "dtype": str(val.dtype).replace("torch.", "")}
    return {}


def _module_path(fx: Any) -> str:
    stack = fx.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = str(list(stack.values())[-1][0])
    return path.replace("L['self'].", "").replace("L__self__.", "")


def _modules(program: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for fx in program.graph.nodes:
        for path, cls in (fx.meta.get("nn_module_stack") or {}).values():
            found.setdefault(str(path), str(getattr(cls, "__name__", cls)).rsplit(".", 1)[-1])
    return found


def _model_name(program: Any) -> str:
    stack = next((fx.meta.get("nn_module_stack") for fx in program.graph.nodes
                  if fx.meta.get("nn_module_stack")), None)
    if stack:
        cls = list(stack.values())[0][1]
        return str(getattr(cls, "__name__", cls)).rsplit(".", 1)[-1]
    return "ExportedProgram"
