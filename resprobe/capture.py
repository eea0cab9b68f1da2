"""capture(model, inputs) -> Graph: record one real, eager forward pass of an unmodified model."""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ._held import Held, ModuleTree, preserved, unwrap
from ._recorder import Recorder, Rewrite, Watcher, gather_tensors, module_scopes
from .errors import CaptureError, InputsError
from .graph import Graph
from .inputs import Inputs
from .load import Loaded, as_loaded

__all__ = ["ModuleTree", "capture", "forward", "output_tensors", "preserved", "unwrap"]


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


def record(model: nn.Module, inputs: Any, *, grad: bool = False, train: bool | None = False,
           watcher: Watcher | None = None) -> Graph:
    """``capture`` with an optional watcher that sees every op (used by verification);
    ``train=None`` keeps every module's training flag as it is."""
    if not isinstance(model, nn.Module):
        raise InputsError(f"expected a torch.nn.Module to capture, got {type(model).__name__}")
    given = Inputs.of(inputs)
    session = Held(model, train=train, inputs=given)
    notes = list(session.notes)
    inp = _to_meta_if_needed(session.device.type == "meta", given, notes)
    start = time.perf_counter()
    with session, torch.enable_grad() if grad else torch.no_grad(), _meta_rules(inp):
        out, recorder = forward(session.model, session.tree, inp, watcher=watcher)
        outputs = tuple(dict.fromkeys(
            i for i in (recorder.producer(t) for t in output_tensors(out)) if i is not None))
        del out
    seconds = time.perf_counter() - start
    notes += session.restored + _value_read_notes(recorder)
    nodes = recorder.nodes()
    return Graph(
        nodes=tuple(nodes), inputs=tuple(n.id for n in nodes if n.is_input),
        outputs=outputs, model=type(session.model).__name__, modules=session.tree.classes,
        notes=tuple(notes), param_sizes={n: p.numel() for n, p in session.tree.params.items()},
        device=str(session.device_for(inp)), seconds=seconds,
    )


def forward(model: nn.Module, tree: ModuleTree, inp: Inputs, *, watcher: Watcher | None = None,
            rewrite: Callable[[Recorder], dict[int, Rewrite]] | None = None) -> tuple[Any, Recorder]:
    """Run ``model`` once under a fresh recorder (the caller holds it: see ``Held``); its output
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


def _to_meta_if_needed(meta: bool, inp: Inputs, notes: list[str]) -> Inputs:
    """``inp`` moved to the meta device when the model has no values (``meta``)."""
    if not meta:
        return inp
    found = gather_tensors(list(inp.args) + list(inp.kwargs.values()), [])
    if all(t.is_meta for t in found):
        return inp
    notes.append("the model has no weights (meta device): inputs were moved to meta")
    return inp.to("meta")


def _meta_rules(inp: Inputs) -> Any:
    """On the meta device, ``nonzero`` (a mixture of experts choosing its tokens) answers as if
    every element were nonzero (torch's own rule for it): every expert is run, so the structure
    shows them all."""
    found = gather_tensors(list(inp.args) + list(inp.kwargs.values()), [])
    if not found or not all(t.is_meta for t in found):
        return contextlib.nullcontext()
    from torch.fx.experimental import _config

    config: Any = _config  # torch's config module: ``patch`` is added at import
    if not hasattr(config, "meta_nonzero_assume_all_nonzero"):  # an older torch: nonzero stays unknown
        return contextlib.nullcontext()
    return config.patch(meta_nonzero_assume_all_nonzero=True)


def _value_read_notes(recorder: Recorder) -> list[str]:
    if not recorder.value_reads:
        return []
    by_op: dict[str, list[tuple[str, int]]] = {}
    for (op, mod), k in sorted(recorder.value_reads.items()):
        by_op.setdefault(op, []).append((mod or "the root module", k))
    parts = ", ".join(
        f"Tensor.{op} in {mods[0][0]!r} ×{mods[0][1]}" if len(mods) == 1 else
        f"Tensor.{op} ×{sum(k for _, k in mods)} in {len(mods)} modules ({mods[0][0]!r} …)"
        for op, mods in by_op.items())
    total = sum(recorder.value_reads.values())
    return [f"meta device: {total} read(s) of tensor values answered with placeholders ({parts}); "
            "the path recorded may differ from a run with real weights"]
