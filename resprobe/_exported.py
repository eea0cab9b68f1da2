"""ExportedProgram files (``torch.export.save``): their JSON graph read; nothing run or unpickled."""

from __future__ import annotations

import json
import math
import time
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import SourceError
from .graph import Graph, Node
from .inputs import Inputs
from .loaded import Loaded

__all__ = ["ExportedGraph", "exported_graph", "load_exported"]

# torch._export.serde.schema.ScalarType -> torch dtype name
_DTYPES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16", 7: "float32",
           8: "float64", 9: "complex32", 10: "complex64", 11: "complex128", 12: "bool", 13: "bfloat16",
           28: "uint16", 29: "float8_e4m3fn", 30: "float8_e5m2", 31: "float8_e4m3fnuz",
           32: "float8_e5m2fnuz", 33: "float8_e8m0fnu", 34: "uint32", 35: "uint64"}
_MAX_JSON = 256 << 20  # a graph's JSON: kilobytes, a few tens of megabytes for the largest models
_LEGACY = "serialized_exported_program.json"  # torch.export.save before the PT2 archive format
_RESAVE = "save it again with torch.export.save from a current PyTorch, or pass the Python model"
_READ = ("read from the ExportedProgram's JSON graph (ATen ops): nothing in the file was run or "
         "unpickled, and its weights and sample inputs were not read")

Meta = tuple[tuple[int, ...] | None, str | None]  # shape (None when symbolic) and dtype name


class ExportedGraph(nn.Module):
    """Stands in for a program read as a graph only: its parameters are meta tensors (shapes and
    dtypes, no values) under their own names; calling it raises ``SourceError``."""

    def __init__(self, source: str, params: Mapping[str, Meta]):
        super().__init__()
        self._graph_source = source
        for name, (shape, dtype) in params.items():
            if shape is not None:
                self._put(name, torch.empty(shape, dtype=getattr(torch, dtype or "float32"), device="meta"))

    def _put(self, name: str, value: torch.Tensor) -> None:
        owner: nn.Module = self
        *path, leaf = name.split(".")
        for part in path:
            if part not in owner._modules:
                owner.add_module(part, nn.Module())
            child = owner._modules[part]
            assert child is not None
            owner = child
        owner.register_parameter(leaf, nn.Parameter(value, requires_grad=False))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise SourceError(f"{self._graph_source} was read as a graph only (nothing in it was run or "
                          "unpickled), so it cannot be run; pass the Python model to run or measure it")


def load_exported(path: Path) -> Loaded:
    """Read an ExportedProgram's graph from the JSON in its archive: no pickle, no torch
    deserialisation, nothing in the file run. Its example inputs are pickled, so they are not
    read; meta tensors of the shapes it was exported with stand in for them."""
    program = _program_json(path)
    try:
        graph = exported_graph(program)
        model = ExportedGraph(str(path), _param_metas(program))
        inputs = _meta_inputs(program)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError, RuntimeError,
            RecursionError) as err:
        raise SourceError(f"{path}: the ExportedProgram's graph is not in a layout resprobe reads "
                          f"({type(err).__name__}: {_first_line(err)}); {_RESAVE}") from err
    return Loaded(model, inputs, "unknown", f"ExportedProgram {path.name}", graph=graph,
                  notes=(_READ,), inputs_description="meta tensors (no values) of the shapes the "
                  "program was exported with")


def _program_json(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as z:
            entry = z.getinfo(_model_entry(path, z.namelist()))
            if entry.file_size > _MAX_JSON:
                raise SourceError(f"{path}: the ExportedProgram's graph would unpack to "
                                  f"{entry.file_size:,} bytes; refused (a zip bomb?)")
            data = json.loads(z.read(entry))
    except (zipfile.BadZipFile, OSError, ValueError, RecursionError, EOFError, MemoryError) as err:
        raise SourceError(f"{path} is a corrupt ExportedProgram ({type(err).__name__}: "
                          f"{_first_line(err)}); save it again with torch.export.save") from err
    if not isinstance(data, dict) or not isinstance(data.get("graph_module"), dict):
        raise SourceError(f"{path}: the ExportedProgram's JSON has no graph_module; {_RESAVE}")
    return data


def _model_entry(path: Path, names: list[str]) -> str:
    """The archive member holding the program: ``<root>/models/model.json`` (what
    ``torch.export.load`` returns), the only ``models/*.json``, or the legacy layout's JSON."""
    models = [n for n in names if n.endswith(".json") and n.rsplit("/", 2)[-2:-1] == ["models"]]
    chosen = [n for n in models if n.endswith("/models/model.json")] or models
    if len(chosen) == 1:
        return chosen[0]
    if len(chosen) > 1:
        raise SourceError(f"{path} holds {len(chosen)} programs ({', '.join(chosen[:3])}) and none is "
                          "called 'model'; save the one to analyse on its own with torch.export.save")
    legacy = [n for n in names if n.rsplit("/", 1)[-1] == _LEGACY]
    if legacy:
        return legacy[0]
    raise SourceError(f"{path} has no ExportedProgram graph (models/*.json) that resprobe reads; {_RESAVE}")


def exported_graph(program: Mapping[str, Any]) -> Graph:
    """Turn a serialised ExportedProgram (the JSON in its archive, parsed) into a ``Graph``:
    module paths from its ``nn_module_stack`` metadata, shapes from its ``tensor_values``."""
    start = time.perf_counter()
    gm = program["graph_module"]
    g = gm["graph"]
    specs = gm["signature"]["input_specs"]
    params = _spec_names(specs, "parameter", "parameter_name")
    buffers = {**_spec_names(specs, "buffer", "buffer_name"),
               **_spec_names(specs, "tensor_constant", "tensor_constant_name")}
    values: Mapping[str, Any] = g.get("tensor_values") or {}
    ids: dict[str, int] = {}
    nodes: list[Node] = []
    for name in _user_inputs(specs):
        ids[name] = len(nodes)
        nodes.append(Node(len(nodes), f"input.{name}", "input", "", **_meta(values, [name])))
    names: dict[str, int] = {}
    for js in g["nodes"]:
        node = _node(js, len(nodes), ids, params, buffers, names, values)
        for out in _names(js["outputs"]):
            ids[out] = node.id  # every output of a multi-output op: the same producer
        nodes.append(node)
    outputs = [ids[n] for n in _names(g["outputs"]) if n in ids]
    return Graph(
        nodes=tuple(nodes), inputs=tuple(n.id for n in nodes if n.is_input),
        outputs=tuple(dict.fromkeys(outputs)), model=_model_name(g["nodes"]), modules=_modules(g["nodes"]),
        param_sizes={p: math.prod(s) for p, (s, _) in _param_metas(program).items() if s is not None},
        notes=("graph read from an ExportedProgram (ATen ops, module paths from its metadata)",),
        device="cpu", seconds=time.perf_counter() - start,
    )


def _node(js: Mapping[str, Any], nid: int, ids: dict[str, int], params: dict[str, str],
          buffers: dict[str, str], names: dict[str, int], values: Mapping[str, Any]) -> Node:
    op = str(js["target"]).removeprefix("torch.ops.")
    module = _module_path(js.get("metadata") or {})
    short = op.split(".")[1].strip("_") if op.startswith("aten.") else op.rsplit(".", 1)[-1]
    base = f"{module}.{short}" if module else short
    k = names.get(base, 0)
    names[base] = k + 1
    ordered = sorted(js["inputs"], key=lambda a: a.get("kind") == 2)  # positional, then keyword
    args = [n for a in ordered for n in _names(a["arg"])]
    return Node(
        nid, base if k == 0 else f"{base}_{k}", op, module, 0,
        inputs=tuple(ids[a] for a in args if a in ids),
        params=tuple(params[a] for a in args if a in params),
        buffers=tuple(buffers[a] for a in args if a in buffers),
        consts=tuple(_number(a["arg"]) for a in ordered if a.get("kind") != 2 and _is_number(a["arg"])),
        inplace=op.startswith("aten.") and op.split(".")[1].endswith("_"),
        **_meta(values, _names(js["outputs"])),
    )


def _names(value: Any) -> list[str]:
    """The value names an argument refers to: tensors (``{"name": ...}``) and symbolic
    numbers (``{"as_name": ...}``), in order, through lists and unions."""
    if isinstance(value, list):
        return [n for v in value for n in _names(v)]
    if not isinstance(value, dict):
        return []
    for key in ("name", "as_name"):
        if isinstance(value.get(key), str):
            return [value[key]]
    return [n for v in value.values() for n in _names(v)]


def _is_number(arg: Any) -> bool:
    return isinstance(arg, dict) and ("as_int" in arg or "as_float" in arg)


def _number(arg: Mapping[str, Any]) -> float:
    value = arg["as_int"] if "as_int" in arg else float(arg["as_float"])  # "Infinity", "NaN" too
    return int(value) if isinstance(value, int) else float(value)


def _spec_names(specs: list[Any], kind: str, field: str) -> dict[str, str]:
    """Placeholder name -> state name for one kind of input spec (parameter, buffer, ...)."""
    return {s[kind]["arg"]["name"]: str(s[kind][field]) for s in specs if kind in s}


def _user_inputs(specs: list[Any]) -> list[str]:
    return [names[0] for s in specs if "user_input" in s and (names := _names(s["user_input"]["arg"]))]


def _tensor_meta(meta: Any) -> Meta:
    if not isinstance(meta, dict):
        return None, None
    sizes = [_int(s) for s in meta.get("sizes") or []]
    shape = None if any(s is None for s in sizes) else tuple(int(s) for s in sizes if s is not None)
    return shape, _DTYPES.get(meta.get("dtype", 0))


def _int(sym: Any) -> int | None:
    """A SymInt's value: ``as_int``, or the hint of an ``as_expr``."""
    if isinstance(sym, dict) and isinstance(sym.get("as_int"), int):
        return int(sym["as_int"])
    hint = (sym.get("as_expr") or {}).get("hint") if isinstance(sym, dict) else None
    return int(hint["as_int"]) if isinstance(hint, dict) and isinstance(hint.get("as_int"), int) else None


def _meta(values: Mapping[str, Any], names: list[str]) -> dict[str, Any]:
    first = next((n for n in names if n in values), None)
    if first is None:
        return {}
    shape, dtype = _tensor_meta(values[first])
    return {"shape": shape, "dtype": dtype}


def _param_metas(program: Mapping[str, Any]) -> dict[str, Meta]:
    """Each parameter's shape and dtype, from its placeholder's tensor meta."""
    gm = program["graph_module"]
    values = gm["graph"].get("tensor_values") or {}
    params = _spec_names(gm["signature"]["input_specs"], "parameter", "parameter_name")
    return {p: _tensor_meta(values.get(arg)) for arg, p in params.items()}


def _meta_inputs(program: Mapping[str, Any]) -> Inputs | None:
    """Meta tensors (no values) shaped like the program's tensor inputs."""
    gm = program["graph_module"]
    values = gm["graph"].get("tensor_values") or {}
    metas = [_tensor_meta(values[n]) for n in _user_inputs(gm["signature"]["input_specs"]) if n in values]
    tensors = tuple(torch.empty(s, dtype=getattr(torch, d or "float32"), device="meta")
                    for s, d in metas if s is not None)
    return Inputs(tensors, {}) if tensors else None


def _stack(metadata: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """``(path, class)`` pairs of a node's ``nn_module_stack`` (``key,path,class;...``)."""
    text = metadata.get("nn_module_stack") or ""
    for item in str(text).split(";") if text else []:
        parts = _split(item)
        if len(parts) == 3:
            yield parts[1], parts[2]


def _split(item: str) -> list[str]:
    """Split on commas outside brackets, as torch does for module-stack entries."""
    out: list[str] = []
    start = depth = 0
    for i, c in enumerate(item):
        depth += (c in "[(") - (c in ")]")
        if c == "," and depth == 0:
            out.append(item[start:i])
            start = i + 1
    return [*out, item[start:]]


def _module_path(metadata: Mapping[str, Any]) -> str:
    stack = list(_stack(metadata))
    if not stack:
        return ""
    return stack[-1][0].replace("L['self'].", "").replace("L__self__.", "")


def _modules(nodes: list[Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for js in nodes:
        for path, cls in _stack(js.get("metadata") or {}):
            found.setdefault(path, cls.rsplit(".", 1)[-1])
    return found


def _model_name(nodes: list[Any]) -> str:
    for js in nodes:
        stack = list(_stack(js.get("metadata") or {}))
        if stack:
            return stack[0][1].rsplit(".", 1)[-1]
    return "ExportedProgram"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
