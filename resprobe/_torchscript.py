"""TorchScript archives (``torch.jit.save``): loaded only when trusted, their graph read as a Graph."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from .errors import SourceError
from .graph import Graph, Node
from .loaded import Loaded

__all__ = ["load_torchscript", "script_graph"]

_PASS = {"prim::ListConstruct", "prim::TupleConstruct"}
_UNPACK = {"prim::ListUnpack", "prim::TupleUnpack"}


def load_torchscript(path: Path, *, trust: bool = False) -> Loaded:
    """Read a TorchScript archive's graph (its ``forward`` is not run). Loading the archive runs
    TorchScript code stored in it (``__setstate__`` methods), so it needs ``trust``."""
    if not trust:
        raise SourceError(
            f"{path} is a TorchScript archive: loading it runs TorchScript code stored in the file "
            "(e.g. its __setstate__ methods), so it was not loaded; pass --trust if you trust the "
            "file, or save the model with torch.export.save (read without running anything)"
        )
    try:
        module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise SourceError(f"{path} is a corrupt TorchScript archive ({type(err).__name__}: {first})") from err
    return Loaded(module, None, "unknown", f"TorchScript archive {path.name}", graph=script_graph(module),
                  notes=("captured from the TorchScript graph (ATen ops); its forward was not run, but "
                         "loading the archive (trusted) ran the TorchScript code stored in it",))


class _Reader:
    """Walks an inlined TorchScript graph: values to producers, attribute chains to names."""

    def __init__(self, module: Any):
        self.params = {n for n, _ in module.named_parameters()}
        self.sizes = {n: int(p.numel()) for n, p in module.named_parameters()}
        self.attr: dict[Any, str] = {}  # value -> dotted attribute path from the root module
        self.made: dict[Any, list[int]] = {}  # value -> producer node ids (several for lists)
        self.nodes: list[Node] = []
        self.names: dict[str, int] = {}

    def add(self, name: str, op: str, module: str, inputs: tuple[int, ...], params: tuple[str, ...],
            buffers: tuple[str, ...], consts: tuple[float, ...], value: Any) -> None:
        k = self.names.get(name, 0)
        self.names[name] = k + 1
        ty = value.type()
        tensor = ty.kind() == "TensorType"
        shape = tuple(ty.sizes()) if tensor and ty.sizes() is not None else None
        dtype = str(ty.dtype()).replace("torch.", "") if tensor and ty.dtype() is not None else None
        self.nodes.append(Node(len(self.nodes), name if k == 0 else f"{name}_{k}", op, module, 0,
                               inputs, shape, dtype, params, buffers, consts, op.endswith("_")))
        self.made[value] = [len(self.nodes) - 1]

    def node(self, n: Any) -> None:
        kind = n.kind()
        if kind in ("prim::Loop", "prim::If"):
            raise SourceError("the TorchScript graph has control flow (prim::Loop/prim::If); resprobe reads "
                              "straight-line graphs (traced models): pass the Python model instead")
        if kind == "prim::GetAttr":
            parent = self.attr.get(n.input())
            if parent is not None:
                self.attr[n.output()] = f"{parent}.{n.s('name')}" if parent else n.s("name")
        elif kind in _PASS:
            self.made[n.output()] = [i for v in n.inputs() for i in self.made.get(v, [])]
        elif kind in _UNPACK:
            ids = self.made.get(n.input(), [])
            for j, out in enumerate(n.outputs()):
                if j < len(ids):
                    self.made[out] = [ids[j]]
        elif kind.startswith("aten::"):
            self.aten(n, kind)

    def aten(self, n: Any, kind: str) -> None:
        if not any("Tensor" in str(out.type()) for out in n.outputs()):
            return  # sizes, dims, scalars: no data
        inputs: list[int] = []
        params: list[str] = []
        buffers: list[str] = []
        consts: list[float] = []
        for v in n.inputs():
            if v in self.made:
                inputs += self.made[v]
            elif v in self.attr and str(v.type()).startswith("Tensor"):
                (params if self.attr[v] in self.params else buffers).append(self.attr[v])
            elif v.node().kind() == "prim::Constant" and str(v.type()) in ("int", "float"):
                consts.append(v.toIValue())
        owners = [p.rpartition(".")[0] for p in params + buffers]
        module = owners[0] if owners else self._inherit(inputs)
        short = kind[len("aten::"):].strip("_")
        self.add(f"{module}.{short}" if module else short, f"aten.{kind[len('aten::'):]}", module,
                 tuple(inputs), tuple(dict.fromkeys(params)), tuple(dict.fromkeys(buffers)),
                 tuple(consts), n.output() if n.outputsSize() == 1 else next(iter(n.outputs())))
        for out in list(n.outputs())[1:]:
            self.made[out] = [len(self.nodes) - 1]

    def _inherit(self, inputs: list[int]) -> str:
        """An op without weights: the module that holds its latest input's op."""
        if not inputs:
            return ""
        src = self.nodes[max(inputs)]
        return src.module.rpartition(".")[0] if src.params or src.buffers else src.module


def script_graph(module: Any) -> Graph:
    """Turn a ``ScriptModule``'s inlined graph into a ``Graph``."""
    start = time.perf_counter()
    graph = module.inlined_graph
    reader = _Reader(module)
    args = list(graph.inputs())
    reader.attr[args[0]] = ""
    for v in args[1:]:
        if str(v.type()).startswith("Tensor"):
            reader.add(f"input.{v.debugName().split('.')[0]}", "input", "", (), (), (), (), v)
    for n in graph.nodes():
        reader.node(n)
    outputs = [i for v in graph.outputs() for i in reader.made.get(v, [])]
    return Graph(
        nodes=tuple(reader.nodes), inputs=tuple(n.id for n in reader.nodes if n.is_input),
        outputs=tuple(dict.fromkeys(outputs)), model=module.original_name,
        modules={}, param_sizes=reader.sizes, device="cpu", seconds=time.perf_counter() - start,
        notes=("graph read from a TorchScript archive (ATen ops); modules of ops without weights "
               "are inferred from their inputs",),
    )
