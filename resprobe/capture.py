"""capture(model, inputs) -> Graph: record one real, eager forward pass of an unmodified model."""

from __future__ import annotations

import functools
import inspect
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from ._recorder import Recorder, Rewrite, Watcher, gather_tensors, module_scopes
from .errors import CaptureError, InputsError
from .graph import Graph
from .inputs import Inputs
from .load import Loaded, as_loaded

__all__ = ["ModuleTree", "capture", "forward", "output_tensors", "preserved", "unwrap"]


def unwrap(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """Strip DataParallel/DistributedDataParallel (``.module``) and ``torch.compile`` wrappers."""
    notes = []
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            notes.append(f"unwrapped {type(model).__name__} (.module)")
            model = model.module
        elif type(model).__name__ == "OptimizedModule" and isinstance(
            getattr(model, "_orig_mod", None), nn.Module
        ):
            notes.append("unwrapped torch.compile (._orig_mod); recorded the eager model")
            model = model._orig_mod  # type: ignore[assignment]
        else:
            return model, notes


def capture(model: nn.Module | Loaded, inputs: Any = None, *, grad: bool = False,
            train: bool = False) -> Graph:
    """Record one forward pass of ``model`` on ``inputs`` into a frozen, torch-free ``Graph``.

    ``model`` is an ``nn.Module`` or a ``Loaded`` (whose inputs are used when ``inputs`` is
    None). ``inputs`` is a tensor, a tuple of positional args, a dict of keyword args or
    ``Inputs``; when None, they are inferred from the model's first layer where possible.
    The model runs in eval mode (``train=True`` keeps train mode) and under ``no_grad``
    (``grad=True`` records with autograd on). Afterwards the model is as it was: training flags,
    buffers and hooks restored; the global RNG state is untouched; no activation is kept alive.
    """
    loaded = as_loaded(model, inputs, what="capture")
    if loaded.graph is not None:
        return loaded.graph
    return record(loaded.model, loaded.inputs, grad=grad, train=train)


def record(model: nn.Module, inputs: Any, *, grad: bool = False, train: bool = False,
           watcher: Watcher | None = None) -> Graph:
    """``capture`` with an optional watcher that sees every op (used by verification)."""
    if not isinstance(model, nn.Module):
        raise InputsError(f"expected a torch.nn.Module to capture, got {type(model).__name__}")
    model, notes = unwrap(model)
    tree = ModuleTree(model)
    tensors: list[Tensor] = list(tree.params.values())
    inp = _to_meta_if_needed(tensors, Inputs.of(inputs), notes)
    tensors += gather_tensors(list(inp.args) + list(inp.kwargs.values()), [])
    start = time.perf_counter()
    with ExitStack() as stack:
        restored = stack.enter_context(preserved(model, tree, train))
        cuda = sorted({t.device.index or 0 for t in tensors if t.is_cuda})
        stack.enter_context(torch.random.fork_rng(devices=cuda))
        stack.enter_context(torch.enable_grad() if grad else torch.no_grad())
        out, recorder = forward(model, tree, inp, watcher=watcher)
        outputs = tuple(dict.fromkeys(
            i for i in (recorder.producer(t) for t in output_tensors(out)) if i is not None))
        del out
    seconds = time.perf_counter() - start
    notes += restored + _value_read_notes(recorder)
    nodes = recorder.nodes()
    return Graph(
        nodes=tuple(nodes), inputs=tuple(n.id for n in nodes if n.is_input),
        outputs=outputs, model=type(model).__name__, modules=tree.classes, notes=tuple(notes),
        param_sizes={n: p.numel() for n, p in tree.params.items()},
        device=str(tensors[0].device) if tensors else "cpu", seconds=seconds,
    )


def forward(model: nn.Module, tree: ModuleTree, inp: Inputs, *, watcher: Watcher | None = None,
            rewrite: Callable[[Recorder], dict[int, Rewrite]] | None = None) -> tuple[Any, Recorder]:
    """Run ``model`` once under a fresh recorder (the caller holds ``preserved``); its output
    and the recorder, whose node ids match a ``capture`` of the same pass. ``rewrite`` makes
    the recorder's rewrite table (ops replaced by node id)."""
    recorder = Recorder(tree.param_ids, tree.buffer_ids, watcher)
    if rewrite is not None:
        recorder.rewrite = rewrite(recorder)
    with module_scopes(tree.by_path, recorder):
        _add_inputs(recorder, model, inp)
        return _run(model, inp, recorder), recorder


def _run(model: nn.Module, inp: Inputs, recorder: Recorder) -> Any:
    try:
        with recorder:
            return model(*inp.args, **inp.kwargs)
    except Exception as err:
        if recorder.failure is not None:
            where = f"in module {recorder.failure[0] or '<root>'!r} at {recorder.failure[1]}"
        else:
            frame = traceback.extract_tb(err.__traceback__)[-1]
            where = f"at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
        msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CaptureError(
            f"the forward pass of {type(model).__name__} failed {where}: "
            f"{type(err).__name__}: {msg}; check that the example inputs fit the model "
            "(shape, dtype, device, argument names)"
        ) from err


def _add_inputs(recorder: Recorder, model: nn.Module, inp: Inputs) -> None:
    names = _positional_names(model, len(inp.args))
    for name, value in zip(names, inp.args):
        _add_input_value(recorder, name, value)
    for name, value in inp.kwargs.items():
        _add_input_value(recorder, name, value)


def _add_input_value(recorder: Recorder, name: str, value: Any) -> None:
    if isinstance(value, Tensor):
        if recorder.producer(value) is None:
            recorder.add_input(name, value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _add_input_value(recorder, f"{name}.{k}", v)
    elif isinstance(value, (list, tuple)) and not isinstance(value, torch.Size):
        for i, v in enumerate(value):
            _add_input_value(recorder, f"{name}.{i}", v)


def _positional_names(model: nn.Module, count: int) -> list[str]:
    if not count:
        return []
    names = list(_forward_params(model.forward.__func__) if hasattr(model.forward, "__func__")
                 else _forward_params(model.forward))
    return (names + [str(i) for i in range(len(names), count)])[:count]


@functools.lru_cache(maxsize=256)
def _forward_params(forward: Any) -> tuple[str, ...]:
    try:
        ps = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):
        return ()
    names = [p.name for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return tuple(names[1:] if names and names[0] == "self" else names)


def output_tensors(out: Any) -> list[Tensor]:
    acc: list[Tensor] = []
    stack = [out]
    while stack:
        v = stack.pop(0)
        if isinstance(v, Tensor):
            acc.append(v)
        elif isinstance(v, Mapping):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)) and not isinstance(v, torch.Size):
            stack.extend(v)
    return acc


class ModuleTree:
    """One walk over the module tree: paths, classes, parameters and buffers by dotted name."""

    def __init__(self, model: nn.Module):
        self.modules: list[nn.Module] = []
        self.by_path: dict[str, nn.Module] = {}
        self.classes: dict[str, str] = {}
        self.params: dict[str, nn.Parameter] = {}
        self.buffers: dict[str, Tensor] = {}
        seen: set[int] = set()
        for path, module in model.named_modules():
            self.modules.append(module)
            self.by_path[path] = module
            self.classes[path] = type(module).__name__
            prefix = f"{path}." if path else ""
            for name, p in module._parameters.items():
                if p is not None and id(p) not in seen:  # tied weights keep their first name
                    seen.add(id(p))
                    self.params[prefix + name] = p
            for name, b in module._buffers.items():
                if b is not None and id(b) not in seen:
                    seen.add(id(b))
                    self.buffers[prefix + name] = b
        self.param_ids = {id(p): n for n, p in self.params.items()}
        self.buffer_ids = {id(b): n for n, b in self.buffers.items()}


# Module attributes torch manages (parameters, buffers, submodules, hooks) or that we set:
# every name a bare nn.Module has, plus the forward wrapper.
_MANAGED = frozenset(nn.Module().__dict__) | {"forward"}
_MISSING = object()


def _attributes(tree: ModuleTree) -> list[tuple[str, nn.Module, dict[str, tuple[Any, Any]]]]:
    """Each module's plain attributes, with a shallow copy of every dict, list and set."""
    snap = []
    for path, m in tree.by_path.items():
        state = {k: (v, v.copy() if type(v) in (dict, list, set) else None)
                 for k, v in m.__dict__.items() if k not in _MANAGED}
        snap.append((path, m, state))
    return snap


def _restore_attributes(snap: list[tuple[str, nn.Module, dict[str, tuple[Any, Any]]]]) -> list[str]:
    """Put back attributes the forward pass set or changed (caches); name what was restored."""
    changed = []
    for path, m, state in snap:
        d = m.__dict__
        for k in [k for k in d if k not in state and k not in _MANAGED]:
            del d[k]
            changed.append(f"{path}.{k}" if path else k)
        for k, (value, copy) in state.items():
            if d.get(k, _MISSING) is not value:
                d[k] = value
                changed.append(f"{path}.{k}" if path else k)
            elif copy is not None and _refilled(value, copy):
                changed.append(f"{path}.{k}" if path else k)
    return changed


def _refilled(value: Any, copy: Any) -> bool:
    """Put the contents of a dict, list or set back as they were; whether they had changed."""
    if type(value) is dict:
        same = len(value) == len(copy) and all(value.get(k, _MISSING) is v for k, v in copy.items())
    elif type(value) is list:
        same = len(value) == len(copy) and all(a is b for a, b in zip(value, copy))
    else:
        same = value == copy
    if not same:
        value.clear()
        value.update(copy) if type(value) is not list else value.extend(copy)
    return not same


_HOOKS = tuple(sorted(k for k, v in nn.Module().__dict__.items() if "hook" in k and isinstance(v, dict)))


def _hooks(tree: ModuleTree) -> list[tuple[nn.Module, list[tuple[dict[Any, Any], dict[Any, Any]]], Any]]:
    """Every module's hook dicts with a copy of their contents (and the full-backward flag)."""
    return [(m, [(d, dict(d)) for d in (m.__dict__.get(k) for k in _HOOKS) if isinstance(d, dict)],
             m.__dict__.get("_is_full_backward_hook")) for m in tree.modules]


def _restore_hooks(snap: list[tuple[nn.Module, list[tuple[dict[Any, Any], dict[Any, Any]]], Any]]) -> bool:
    """Remove hooks the forward pass installed (and put back any it removed); whether any had."""
    changed = False
    for m, dicts, full in snap:
        for d, copy in dicts:
            if list(d.items()) != list(copy.items()):
                d.clear()
                d.update(copy)
                changed = True
        if m.__dict__.get("_is_full_backward_hook") is not full:
            m.__dict__["_is_full_backward_hook"] = full
    return changed


def _swap_buffers(tree: ModuleTree) -> list[tuple[nn.Module, str, Tensor, Tensor]]:
    """Give every module a private copy of its buffers for the run (tied buffers stay tied), so
    that batch-norm statistics, spectral-norm vectors and the like are never written: the
    model's own buffer tensors keep their values and their version counters."""
    copies: dict[int, Tensor] = {}
    swapped = []
    for m in tree.modules:
        for name, buf in list(m._buffers.items()):
            if buf is None or buf.is_inference():
                continue
            with torch.no_grad():
                copy = copies.setdefault(id(buf), buf.detach().clone())
            m._buffers[name] = copy
            swapped.append((m, name, buf, copy))
    tree.buffers = {n: copies.get(id(b), b) for n, b in tree.buffers.items()}
    tree.buffer_ids = {id(b): n for n, b in tree.buffers.items()}
    return swapped


def _unswap_buffers(tree: ModuleTree, swapped: list[tuple[nn.Module, str, Tensor, Tensor]]) -> list[str]:
    """Put the model's own buffers back; the names of those the run changed (on the copies)."""
    originals = {id(copy): buf for _, _, buf, copy in swapped}
    changed = {n for n, b in tree.buffers.items() if id(b) in originals and not b.is_meta
               and not torch.equal(b, originals[id(b)])}
    for m, name, buf, _ in swapped:
        m._buffers[name] = buf
    tree.buffers = {n: originals.get(id(b), b) for n, b in tree.buffers.items()}
    tree.buffer_ids = {id(b): n for n, b in tree.buffers.items()}
    return sorted(changed)


@contextmanager
def preserved(model: nn.Module, tree: ModuleTree, train: bool) -> Iterator[list[str]]:
    """Eval mode (unless ``train``) for the run; afterwards training flags, buffers (their very
    tensors, values and versions), hooks and plain attributes (caches a forward pass fills) as
    found."""
    flags = [(m, m.training) for m in tree.modules]
    attrs = _attributes(tree)
    hooks = _hooks(tree)
    notes: list[str] = []
    if model.training and not train:
        notes.append("recorded in eval mode (the model was in train mode; it is restored)")
    swapped = _swap_buffers(tree)
    try:
        if any(flag != train for _, flag in flags):
            model.train(train)
        yield notes
    finally:
        for m, flag in flags:
            if m.training != flag:
                m.training = flag
        changed = _restore_attributes(attrs)
        if changed:
            notes.append(f"the forward pass set or changed module attribute(s) {', '.join(changed[:4])}"
                         f"{' …' if len(changed) > 4 else ''}; restored")
        if _restore_hooks(hooks):
            notes.append("the forward pass installed or removed module hooks; they are as found again")
        for name in _unswap_buffers(tree, swapped):
            notes.append(f"the forward pass changed buffer {name!r} (a copy: the model's own is untouched)")


def _to_meta_if_needed(params: list[Tensor], inp: Inputs, notes: list[str]) -> Inputs:
    if not params or not all(p.is_meta for p in params):
        return inp
    found = gather_tensors(list(inp.args) + list(inp.kwargs.values()), [])
    if all(t.is_meta for t in found):
        return inp
    notes.append("the model has no weights (meta device): inputs were moved to meta")
    return inp.to("meta")


def _value_read_notes(recorder: Recorder) -> list[str]:
    if not recorder.value_reads:
        return []
    parts = ", ".join(f"Tensor.{op} in {mod or 'the root module'!r} ×{k}"
                      for (op, mod), k in sorted(recorder.value_reads.items()))
    total = sum(recorder.value_reads.values())
    return [f"meta device: {total} read(s) of tensor values answered with placeholders ({parts}); "
            "the path recorded may differ from a run with real weights"]
