"""Holding a model for analysis, and leaving it exactly as it was found.

Entering a ``Held`` puts the model in eval mode (unless ``train``), gives every module a
private copy of its buffers and forks the global and CUDA RNG states; leaving it, also when
the body raises, puts back training flags, buffers (the very tensors, their values and version
counters), hooks, plain module attributes (caches a forward pass fills), ``requires_grad``
flags and the RNG states. Every analysis that runs the model holds it so (capture directly,
the probes through ``resprobe.session.Session``): this file is where the bit-identical
guarantee lives (tests/test_session.py tests it). While held, it knows the model's device and
moves batches there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn

from ._recorder import gather_tensors
from .inputs import Inputs

__all__ = ["Held", "ModuleTree", "Steps", "preserved", "unwrap"]


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
def preserved(model: nn.Module, tree: ModuleTree, train: bool | None) -> Iterator[list[str]]:
    """Eval mode (unless ``train``; None keeps every module's flag as it is) for the run;
    afterwards training flags, buffers (their very tensors, values and versions), hooks and
    plain attributes (caches a forward pass fills) as found."""
    flags = [(m, m.training) for m in tree.modules]
    attrs = _attributes(tree)
    hooks = _hooks(tree)
    notes: list[str] = []
    if model.training and train is False:
        notes.append("recorded in eval mode (the model was in train mode; it is restored)")
    swapped = _swap_buffers(tree)
    try:
        if train is not None and any(flag != train for _, flag in flags):
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
        changed_buffers = _unswap_buffers(tree, swapped)
        if changed_buffers:
            shown = ", ".join(repr(n) for n in changed_buffers[:4])
            more = " …" if len(changed_buffers) > 4 else ""
            notes.append(f"the forward pass changed {len(changed_buffers)} buffer(s) ({shown}{more}): "
                         "copies, the model's own are untouched")


@contextmanager
def _grad_flags(tree: ModuleTree, trainable: bool) -> Iterator[list[str]]:
    """Every parameter's ``requires_grad`` as found afterwards; with ``trainable``, every float
    parameter takes gradients meanwhile (the names of those thawed so are yielded)."""
    flags = [(p, p.requires_grad) for p in tree.params.values()]
    thawed = [n for n, p in tree.params.items()
              if trainable and not p.requires_grad and p.is_floating_point()]
    try:
        for name in thawed:
            tree.params[name].requires_grad_(True)
        yield thawed
    finally:
        for p, flag in flags:
            if p.requires_grad != flag:
                p.requires_grad_(flag)


class Held:
    """``model`` (unwrapped from DataParallel and ``torch.compile``) held for analysis: entered,
    the session keeps it as found (see the module docstring); ``restored`` then lists what the
    runs changed and were undone (filled on exit), ``notes`` what unwrapping did.

    ``train`` keeps train mode for the runs (None: every module's flag as found); ``dtype``
    runs the instrumented passes (and their re-captures) under autocast; ``trainable`` lets
    every float parameter take gradients while held (``thawed`` names those that were frozen).
    ``inputs`` (when known before entering) adds the CUDA devices of their tensors to the RNG
    states forked. ``tree`` is the model's
    ``ModuleTree`` when the caller has walked it already.

    A session that is not entered still runs passes: the caller then holds the model itself.
    """

    def __init__(self, model: nn.Module, *, train: bool | None = False, dtype: torch.dtype | None = None,
                 trainable: bool = False, inputs: Inputs | None = None, tree: ModuleTree | None = None):
        self.model, self.notes = unwrap(model)
        self.tree = ModuleTree(self.model) if tree is None else tree
        self.train, self.dtype, self.trainable, self.inputs = train, dtype, trainable, inputs
        self.restored: list[str] = []
        self.thawed: list[str] = []
        self._held: ExitStack | None = None

    # -- holding ---------------------------------------------------------------------------
    def __enter__(self) -> Held:
        if self._held is not None:
            raise RuntimeError("this session holds its model already")
        with ExitStack() as stack:
            self.restored = stack.enter_context(preserved(self.model, self.tree, self.train))
            stack.enter_context(torch.random.fork_rng(devices=self.cuda_devices()))
            self.thawed = stack.enter_context(_grad_flags(self.tree, self.trainable))
            self._held = stack.pop_all()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.__exit__(kind, err, tb)

    def cuda_devices(self) -> list[int]:
        """The CUDA devices whose RNG state the session forks: those of the parameters and of
        ``inputs``."""
        tensors: list[Tensor] = list(self.tree.params.values())
        if self.inputs is not None:
            tensors += _tensors(self.inputs)
        return sorted({t.device.index or 0 for t in tensors if t.is_cuda})

    # -- the device --------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the model computes: the device of its first parameter that holds values; for a
        model whose weights are all offloaded (meta between passes, loaded by accelerate's hooks),
        the hooks' execution device; meta for a model without values; cpu without parameters."""
        params = self.tree.params.values()
        held = next((p.device for p in params if not p.is_meta), None)  # usually the first one
        if held is not None:
            return held
        hook = next((m.__dict__["_hf_hook"] for m in self.tree.modules if "_hf_hook" in m.__dict__), None)
        if hook is not None:  # accelerate: weights offloaded, brought in for each pass
            where = getattr(hook, "execution_device", None)
            return torch.device(where if where is not None else "cpu")
        return torch.device("meta") if params else torch.device("cpu")

    def device_for(self, inp: Inputs) -> torch.device:
        """Where a pass on ``inp`` computes: the model's device, or for a model without
        parameters, where the first tensor of ``inp`` lies."""
        if self.tree.params:
            return self.device
        found = _tensors(inp)
        return found[0].device if found else torch.device("cpu")

    def on(self, inp: Inputs, targets: Any = None) -> tuple[Inputs, Any]:
        """A batch (inputs and targets) on the model's device; a model without parameters runs
        wherever its inputs are, so there the batch stays as it is."""
        if not self.tree.params:
            return inp, targets
        device = self.device
        return inp.to(device), targets.to(device) if isinstance(targets, Tensor) else targets

    def autocast(self, inp: Inputs) -> AbstractContextManager[Any]:
        """Autocast to the session's ``dtype`` on the device of a pass on ``inp`` (nothing when
        the session has no ``dtype``)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_for(inp).type, dtype=self.dtype)


class Steps:
    """The steps of one phase of a session's runs (batches, lesions, depth steps): each call
    counts one and reports it as ``progress(done, total)``, when there is a ``progress``."""

    def __init__(self, progress: Callable[[int, int], None] | None, total: int):
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


def _tensors(inp: Inputs) -> list[Tensor]:
    """The tensors of ``inp``: positional first, then keyword (in nested lists and tuples)."""
    return gather_tensors(list(inp.args) + list(inp.kwargs.values()), [])
