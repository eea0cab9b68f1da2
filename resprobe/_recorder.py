"""The only module that touches torch interception: a scoped TorchFunctionMode and forward wrappers."""

from __future__ import annotations

import contextlib
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode, resolve_name

from .graph import Node

__all__ = ["Recorder", "Rewrite", "Watcher", "gather_tensors", "module_scopes"]

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
# Reads of tensor metadata (never data): answered at once, never recorded.
_METADATA = frozenset(
    [getattr(Tensor, name) for name in (
        "size", "dim", "numel", "stride", "is_floating_point", "is_complex", "is_contiguous",
        "element_size", "get_device", "storage_offset", "__len__", "nelement", "ndimension",
    )]
    + [getattr(Tensor, name).__get__ for name in (
        "shape", "dtype", "device", "ndim", "requires_grad", "is_cuda", "is_meta", "layout",
        "is_sparse", "is_quantized",
    )]
)
_INPLACE_DUNDERS = frozenset({
    "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__imod__",
    "__ipow__", "__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__", "__setitem__",
})


class Watcher(Protocol):
    """Optional observer of a recording (used to verify blocks on real values)."""

    def before(self, next_id: int, op: str, tensors: list[Tensor],
               producers: list[int | None]) -> None: ...

    def after(self, node_id: int, output: Tensor) -> None: ...


# Called instead of the op about to become node ``id``: (func, args, kwargs) -> what to call.
Rewrite = Callable[[Any, tuple[Any, ...], dict[str, Any]], tuple[Any, tuple[Any, ...], dict[str, Any]]]


def gather_tensors(values: Iterable[Any], acc: list[Tensor]) -> list[Tensor]:
    """Append every tensor found in ``values`` (nested lists and tuples) to ``acc``."""
    for v in values:
        if isinstance(v, Tensor):
            acc.append(v)
        elif type(v) is list or type(v) is tuple:
            gather_tensors(v, acc)
    return acc


_NAMES: dict[Any, tuple[str, str]] = {}  # a memo: resolve_name is slow (~0.5 ms a call)


def _op_names(func: Callable[..., Any]) -> tuple[str, str]:
    """The recorded op name (``'Tensor.add_'``, ``'torch.nn.functional.conv2d'``) and a short one."""
    try:
        return _NAMES[func]
    except (KeyError, TypeError):
        pass
    name = resolve_name(func) or getattr(func, "__qualname__", None) or repr(func)
    if name.endswith(".__get__"):
        name = name[: -len(".__get__")]
    if name.startswith("torch.Tensor."):
        name = name[len("torch."):]
    names = (name, name.rsplit(".", 1)[-1].strip("_") or "op")
    with contextlib.suppress(TypeError):  # an unhashable callable is simply not remembered
        _NAMES[func] = names
    return names


def _version(t: Tensor) -> int:
    try:
        return int(t._version)
    except RuntimeError:  # inference tensors keep no version counter
        return -1


def _writes_self(func: Callable[..., Any]) -> bool:
    """Whether an op writes into its first argument by its name (``add_``, ``__setitem__``)."""
    name = getattr(func, "__name__", "")
    return name in _INPLACE_DUNDERS or (name.endswith("_") and not name.startswith("_"))


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
    """Records every torch op of a forward pass; holds tensors only by weak reference.

    The hot path appends plain tuples; ``nodes()`` turns them into ``Node``s afterwards.
    """

    def __init__(self, params: dict[int, str], buffers: dict[int, str], watcher: Watcher | None = None,
                 rewrite: dict[int, Rewrite] | None = None):
        super().__init__()
        self.params = params
        self.buffers = buffers
        self.watcher = watcher
        self.rewrite = rewrite
        self.scope: list[tuple[str, int]] = [("", 0)]
        self.calls: dict[str, int] = {}
        self.value_reads: Counter[tuple[str, str]] = Counter()
        self.failure: tuple[str, str] | None = None
        self._raw: list[tuple[Any, ...]] = []
        # id(tensor) -> (node id, weak reference, version counter when it was recorded)
        self._producer: dict[int, tuple[int, weakref.ref[Tensor], int]] = {}
        self._dtypes: dict[torch.dtype, str] = {}

    # -- tensor bookkeeping -------------------------------------------------------------
    def producer(self, t: Tensor) -> int | None:
        entry = self._producer.get(id(t))
        if entry is not None and entry[1]() is t:
            return entry[0]
        return None

    def add_input(self, name: str, t: Tensor) -> int:
        nid = len(self._raw)
        self._raw.append(("input", f"input.{name}", "", 0, (), (), (), (), t.shape, t.dtype, False, None))
        self._producer[id(t)] = (nid, weakref.ref(t), _version(t))
        if self.watcher is not None:
            self.watcher.after(nid, t)
        return nid

    def ops(self) -> list[str]:
        """The op name of every node recorded so far, in order (cheaper than ``nodes()``)."""
        return [raw[0] for raw in self._raw]

    def nodes(self) -> list[Node]:
        """The recorded ops as ``Node``s with unique dotted names (``blk.split``, ``blk.split_1``;
        the outputs of a multi-output op ``blk.chunk[0]``, ``blk.chunk[1]``)."""
        seen: dict[str, int] = {}
        out = []
        name = ""
        for nid, (op, short, path, call, inputs, params, buffers, consts, shape, dtype,
                  inplace, index) in enumerate(self._raw):
            if not index:  # a new call (not a further output of the last one)
                base = short if op == "input" or not path else f"{path}.{short}"
                k = seen.get(base, 0)
                seen[base] = k + 1
                name = base if k == 0 else f"{base}_{k}"
            dname = self._dtypes.get(dtype) or self._dtypes.setdefault(
                dtype, str(dtype).replace("torch.", ""))
            out.append(Node(nid, name if index is None else f"{name}[{index}]", op, path, call,
                            inputs, tuple(shape), dname, params, buffers, consts, inplace, index))
        return out

    # -- module scopes ------------------------------------------------------------------
    def enter(self, path: str) -> None:
        k = self.calls.get(path, 0)
        self.calls[path] = k + 1
        self.scope.append((path, k))

    def leave(self) -> None:
        if len(self.scope) > 1:
            self.scope.pop()

    # -- the interception (hot path: keep it lean) ---------------------------------------
    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in _METADATA:
            return func(*args, **(kwargs or {}))
        tensors: list[Tensor] = []
        consts: list[float] = []
        for a in args:
            if isinstance(a, Tensor):
                tensors.append(a)
            elif type(a) is float or type(a) is int:
                consts.append(a)
            elif type(a) is list or type(a) is tuple:
                gather_tensors(a, tensors)
        if kwargs:
            gather_tensors(kwargs.values(), tensors)
        else:
            kwargs = {}
        if self.watcher is not None:
            self._before(func, tensors)
        call = func
        if self.rewrite is not None:
            hook = self.rewrite.get(len(self._raw))
            if hook is not None:
                call, args, kwargs = hook(func, args, kwargs)
        try:
            out = call(*args, **kwargs)
        except (RuntimeError, NotImplementedError):
            fixed = _meta_indexed(func, args)
            if fixed is None:
                return self._failed(func, tensors)
            self.value_reads[("__getitem__", self.scope[-1][0])] += 1
            args = fixed
            try:
                out = call(*args, **kwargs)
            except (RuntimeError, NotImplementedError):
                return self._failed(func, tensors)
        seq = False
        if isinstance(out, Tensor):
            outs = [out]
        elif isinstance(out, (tuple, list)):
            outs = gather_tensors(out, [])
            seq = True
        else:
            outs = []
        for o in outs:  # the usual case: every output is a new tensor, nothing was written
            for t in tensors:
                if o is t:
                    break
            else:
                continue
            break
        else:
            if outs:
                self._record(func, consts, kwargs, tensors, outs, [], seq)
                return out
        # An input came back, or no tensor did: a pass-through, a value read, or a write.
        mutated = [t for t in tensors if self._written(t)]
        if not mutated and tensors and _writes_self(func) and self.producer(tensors[0]) is None:
            mutated = tensors[:1]  # a write into state made outside forward (a cache)
        if mutated or any(all(o is not t for t in tensors) for o in outs):
            self._record(func, consts, kwargs, tensors, outs, mutated, seq)
        return out

    def _written(self, t: Tensor) -> bool:
        """Whether ``t`` changed since it was last recorded (its version counter moved)."""
        entry = self._producer.get(id(t))
        if entry is None or entry[1]() is not t or entry[2] < 0:
            return False
        return _version(t) != entry[2]

    def _before(self, func: Any, tensors: list[Tensor]) -> None:
        assert self.watcher is not None
        self.watcher.before(len(self._raw), _op_names(func)[0], tensors,
                            [self.producer(t) for t in tensors])

    def _failed(self, func: Any, tensors: list[Tensor]) -> Any:
        """Answer a value read on the meta device; otherwise note where it failed and re-raise."""
        name = getattr(func, "__name__", "")
        if name in _VALUE_READS and any(t.is_meta for t in tensors):
            src = self.producer(tensors[0])
            self.value_reads[(name, self.scope[-1][0])] += 1
            return _placeholder(name, tensors, None if src is None else self._raw[src][0])
        self.failure = (self.scope[-1][0], _op_names(func)[0])
        raise  # noqa: PLE0704 - re-raises the error being handled by the caller

    def _record(self, func: Any, consts: list[float], kwargs: Any, tensors: list[Tensor],
                outs: list[Tensor], mutated: list[Tensor], seq: bool = False) -> None:
        """Append the node(s) of one op: one node, or, for an op that returned a sequence of
        new tensors (``split``, ``chunk``, ``unbind``), one node per output with its index."""
        op, short = _op_names(func)
        if short in _SHAPE_ONLY:
            tensors = []
        elif short in _FIRST_ONLY:
            tensors = tensors[:1]
        inputs = []
        params = []
        buffers = []
        producers = self._producer
        for t in tensors:
            key = id(t)
            entry = producers.get(key)
            if entry is not None and entry[1]() is t:
                inputs.append(entry[0])
            else:
                name = self.params.get(key)
                if name is not None:
                    params.append(name)
                elif key in self.buffers:
                    buffers.append(self.buffers[key])
        if kwargs:
            consts += [v for v in kwargs.values() if type(v) is float or type(v) is int]
        path, call = self.scope[-1]
        head = (op, short, path, call, tuple(inputs),
                tuple(dict.fromkeys(params)) if params else (),
                tuple(dict.fromkeys(buffers)) if buffers else (), tuple(consts))
        if seq and not mutated:
            for k, o in enumerate(outs):
                self._append(head, o, False, k)
            return
        results = mutated + [o for o in outs if all(o is not m for m in mutated)] if mutated else outs
        nid = self._append(head, results[0], bool(mutated), None, results[1:])
        for t in mutated:
            base = t._base
            if base is not None:  # writing through a view changes its base too
                producers[id(base)] = (nid, weakref.ref(base), _version(base))

    def _append(self, head: tuple[Any, ...], out: Tensor, inplace: bool,
                index: int | None, also: list[Tensor] | tuple[()] = ()) -> int:
        """One raw node producing ``out`` (and ``also``); ``index``: its position among the
        outputs of a multi-output op (node ``id - index`` is the call's first output)."""
        nid = len(self._raw)
        self._raw.append((*head, out.shape, out.dtype, inplace, index))
        ref = weakref.ref
        for t in (out, *also):
            self._producer[id(t)] = (nid, ref(t), _version(t))
        if self.watcher is not None:
            self.watcher.after(nid, out)
        return nid


def _meta_indexed(func: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """``t[i]`` on the meta device with ``i`` a 0-dim integer tensor (an expert chosen by its
    index) needs ``i``'s value: the same indexing with 0 in its place, or None when there is no
    such index."""
    if getattr(func, "__name__", "") != "__getitem__" or len(args) != 2 or not isinstance(args[0], Tensor) \
            or not args[0].is_meta:
        return None

    def placeholder(i: Any) -> Any:
        if isinstance(i, Tensor) and i.is_meta and i.dim() == 0 and not i.is_floating_point():
            return 0
        return i

    index = args[1]
    parts = index if type(index) is tuple else (index,)
    fixed = tuple(placeholder(i) for i in parts)
    if all(a is b for a, b in zip(fixed, parts)):
        return None
    return (args[0], fixed if type(index) is tuple else fixed[0])


@contextmanager
def module_scopes(modules: dict[str, nn.Module], recorder: Recorder) -> Iterator[None]:
    """Tell the recorder which module call is running, for the modules in ``modules``.

    Each module's ``forward`` is wrapped by an instance attribute for the duration of the
    ``with`` (so module calls keep torch's fast path, and direct ``self.forward()`` calls are
    seen too); on exit every instance is restored exactly, including a ``forward`` attribute
    it already had.
    """
    missing = object()
    saved: list[tuple[nn.Module, Any]] = []
    try:
        for path, module in modules.items():
            if not path or isinstance(module, torch.jit.ScriptModule):
                continue
            own = module.__dict__.get("forward", missing)
            module.__dict__["forward"] = _scoped(module.forward, path, recorder)
            saved.append((module, own))
        yield
    finally:
        for module, own in saved:
            if own is missing:
                del module.__dict__["forward"]
            else:
                module.__dict__["forward"] = own


def _scoped(forward: Callable[..., Any], path: str, recorder: Recorder) -> Callable[..., Any]:
    enter, leave = recorder.enter, recorder.leave

    def scoped_forward(*args: Any, **kwargs: Any) -> Any:
        enter(path)
        try:
            return forward(*args, **kwargs)
        finally:
            leave()

    return scoped_forward
