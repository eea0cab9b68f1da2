"""The only module that touches torch interception: a scoped TorchFunctionMode plus module hooks."""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode, resolve_name

from .graph import Node

__all__ = ["Recorder", "Watcher", "gather_tensors", "module_scopes"]

_INPLACE_DUNDERS = frozenset({
    "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__imod__",
    "__ipow__", "__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__", "__setitem__",
})
# Ops whose tensor arguments only lend a shape, dtype or device: no data edge from them.
_SHAPE_ONLY = frozenset({
    "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like",
    "randint_like", "new_zeros", "new_ones", "new_empty", "new_full", "new_empty_strided",
})
# Ops that read data from their first tensor only (the others lend a dtype, device or shape).
_FIRST_ONLY = frozenset({"to", "type_as", "expand_as", "view_as", "reshape_as"})
# Reads of tensor values into Python; on the meta device there are no values to read.
_VALUE_READS = frozenset({
    "item", "__bool__", "tolist", "__int__", "__float__", "__index__", "__complex__",
    "is_nonzero", "equal", "allclose",
})
_TRUE_BY_DEFAULT = frozenset({"equal", "allclose"})


class Watcher(Protocol):
    """Optional observer of a recording (used to verify blocks on real values)."""

    def before(self, next_id: int, op: str, tensors: list[Tensor],
               producers: list[int | None]) -> None: ...

    def after(self, node: Node, output: Tensor) -> None: ...


def gather_tensors(values: Iterable[Any], acc: list[Tensor]) -> list[Tensor]:
    """Append every tensor found in ``values`` (nested lists and tuples) to ``acc``."""
    for v in values:
        if isinstance(v, Tensor):
            acc.append(v)
        elif isinstance(v, (list, tuple)) and not isinstance(v, torch.Size):
            gather_tensors(v, acc)
    return acc


def _op_name(func: Callable[..., Any]) -> str:
    name = resolve_name(func) or getattr(func, "__qualname__", None) or repr(func)
    if name.endswith(".__get__"):
        name = name[: -len(".__get__")]
    return name[len("torch."):] if name.startswith("torch.Tensor.") else name


def _short(func: Callable[..., Any]) -> str:
    name = getattr(func, "__name__", "op")
    if name == "__get__":
        name = _op_name(func).rsplit(".", 1)[-1]
    return name.strip("_") or "op"


def _version(t: Tensor) -> int:
    try:
        return int(t._version)
    except RuntimeError:  # inference tensors keep no version counter
        return -1


def _placeholder(name: str, tensors: list[Tensor], producer_op: str | None) -> Any:
    """A stand-in for a value read from a meta tensor."""
    if name in ("__bool__", "is_nonzero"):
        return bool(producer_op and producer_op.endswith(".all"))
    if name in _TRUE_BY_DEFAULT:
        return True
    t = tensors[0]
    if name == "tolist":
        return torch.zeros(t.shape, dtype=t.dtype).tolist()
    if name == "__float__":
        return 0.0
    if name == "__complex__":
        return 0j
    if t.dtype == torch.bool:
        return False
    return 0.0 if t.dtype.is_floating_point and name == "item" else 0


class Recorder(TorchFunctionMode):
    """Records every torch op of a forward pass as a ``Node``; holds tensors only by weak reference."""

    def __init__(self, params: dict[int, str], buffers: dict[int, str], watcher: Watcher | None = None):
        super().__init__()
        self.nodes: list[Node] = []
        self.params = params
        self.buffers = buffers
        self.watcher = watcher
        self.scope: list[tuple[str, int]] = [("", 0)]
        self.calls: Counter[str] = Counter()
        self.value_reads: Counter[tuple[str, str]] = Counter()
        self._producer: dict[int, tuple[int, weakref.ref[Tensor]]] = {}
        self._names: Counter[str] = Counter()
        self._ops: dict[Any, tuple[str, str]] = {}
        self.failure: tuple[str, str] | None = None

    # -- tensor bookkeeping -------------------------------------------------------------
    def producer(self, t: Tensor) -> int | None:
        entry = self._producer.get(id(t))
        if entry is not None and entry[1]() is t:
            return entry[0]
        return None

    def _bind(self, t: Tensor, node_id: int) -> None:
        self._producer[id(t)] = (node_id, weakref.ref(t))

    def _unique(self, base: str) -> str:
        k = self._names[base]
        self._names[base] = k + 1
        return base if k == 0 else f"{base}_{k}"

    def add_input(self, name: str, t: Tensor) -> int:
        node = Node(id=len(self.nodes), name=self._unique(f"input.{name}"), op="input", module="",
                    shape=tuple(t.shape), dtype=str(t.dtype).replace("torch.", ""))
        self.nodes.append(node)
        self._bind(t, node.id)
        if self.watcher is not None:
            self.watcher.after(node, t)
        return node.id

    # -- module scopes ------------------------------------------------------------------
    def enter(self, path: str) -> None:
        self.scope.append((path, self.calls[path]))
        self.calls[path] += 1

    def leave(self) -> None:
        if len(self.scope) > 1:
            self.scope.pop()

    # -- the interception ---------------------------------------------------------------
    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if kwargs is None:
            kwargs = {}
        tensors = gather_tensors(args, [])
        if kwargs:
            gather_tensors(kwargs.values(), tensors)
        versions = [_version(t) for t in tensors]
        if self.watcher is not None:
            op = (self._ops.get(func) or self._ops.setdefault(func, (_op_name(func), _short(func))))[0]
            self.watcher.before(len(self.nodes), op, tensors, [self.producer(t) for t in tensors])
        try:
            out = func(*args, **kwargs)
        except (RuntimeError, NotImplementedError):
            name = getattr(func, "__name__", "")
            if name in _VALUE_READS and any(t.is_meta for t in tensors):
                return self._meta_read(name, tensors)
            self.failure = (self.scope[-1][0], _op_name(func))
            raise
        outs = [out] if isinstance(out, Tensor) else (
            gather_tensors(out, []) if isinstance(out, (tuple, list)) else [])
        mutated = [t for t, v in zip(tensors, versions) if v >= 0 and _version(t) != v]
        if not mutated and (not outs or all(any(o is t for t in tensors) for o in outs)):
            return out  # no tensor made (sizes, value reads) or a pass-through (x.contiguous())
        self._record(func, args, kwargs, tensors, outs, mutated)
        return out

    def _meta_read(self, name: str, tensors: list[Tensor]) -> Any:
        src = self.producer(tensors[0])
        self.value_reads[(name, self.scope[-1][0])] += 1
        return _placeholder(name, tensors, None if src is None else self.nodes[src].op)

    def _record(self, func: Any, args: Any, kwargs: Any, tensors: list[Tensor],
                outs: list[Tensor], mutated: list[Tensor]) -> None:
        op, short = self._ops.get(func) or self._ops.setdefault(func, (_op_name(func), _short(func)))
        if short in _SHAPE_ONLY:
            tensors = []
        elif short in _FIRST_ONLY:
            tensors = tensors[:1]
        inputs: list[int] = []
        params: list[str] = []
        buffers: list[str] = []
        for t in tensors:
            src = self.producer(t)
            if src is not None:
                inputs.append(src)
            elif id(t) in self.params:
                params.append(self.params[id(t)])
            elif id(t) in self.buffers:
                buffers.append(self.buffers[id(t)])
        consts = [float(a) for a in args if type(a) in (int, float)]
        consts += [float(v) for v in kwargs.values() if type(v) in (int, float)]
        results = mutated + [o for o in outs if not any(o is m for m in mutated)]
        first = results[0]
        path, call = self.scope[-1]
        node = Node(
            id=len(self.nodes), name=self._unique(f"{path}.{short}" if path else short), op=op,
            module=path, call=call, inputs=tuple(inputs), shape=tuple(first.shape),
            dtype=str(first.dtype).replace("torch.", ""), params=tuple(dict.fromkeys(params)),
            buffers=tuple(dict.fromkeys(buffers)), consts=tuple(consts), inplace=bool(mutated),
        )
        self.nodes.append(node)
        for t in results:
            self._bind(t, node.id)
            base = t._base
            if base is not None and any(t is m for m in mutated):
                self._bind(base, node.id)  # writing through a view changes its base too
        if self.watcher is not None:
            self.watcher.after(node, first)


@contextmanager
def module_scopes(root: nn.Module, recorder: Recorder) -> Iterator[dict[str, str]]:
    """Hooks on every submodule that tell the recorder which module call is running."""
    paths: dict[str, str] = {}
    with ExitStack() as stack:
        for path, module in root.named_modules():
            paths[path] = type(module).__name__
            if not path:
                continue

            def pre(_m: nn.Module, _a: Any, _p: str = path) -> None:
                recorder.enter(_p)

            def post(_m: nn.Module, _a: Any, _o: Any) -> None:
                recorder.leave()

            stack.callback(module.register_forward_pre_hook(pre).remove)
            stack.callback(module.register_forward_hook(post, always_call=True).remove)
        yield paths
