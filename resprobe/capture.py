"""capture(model, inputs) -> Graph: record one real, eager forward pass of an unmodified model."""

from __future__ import annotations

import inspect
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from ._recorder import Recorder, Watcher, gather_tensors, module_scopes
from .errors import CaptureError, InputsError
from .graph import Graph
from .inputs import Inputs

__all__ = ["capture", "unwrap"]


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
            model = model._orig_mod
        else:
            return model, notes


def capture(model: nn.Module, inputs: Any, *, grad: bool = False, train: bool = False) -> Graph:
    """Record one forward pass of ``model`` on ``inputs`` into a frozen, torch-free ``Graph``.

    ``inputs`` is a tensor, a tuple of positional args, a dict of keyword args or ``Inputs``.
    The model runs in eval mode (``train=True`` keeps train mode) and under ``no_grad``
    (``grad=True`` records with autograd on). Afterwards the model is as it was: training flags,
    buffers and hooks restored; the global RNG state is untouched; no activation is kept alive.
    """
    return record(model, inputs, grad=grad, train=train)


def record(model: nn.Module, inputs: Any, *, grad: bool = False, train: bool = False,
           watcher: Watcher | None = None) -> Graph:
    """``capture`` with an optional watcher that sees every op (used by verification)."""
    if not isinstance(model, nn.Module):
        raise InputsError(f"expected a torch.nn.Module to capture, got {type(model).__name__}")
    model, notes = unwrap(model)
    inp = Inputs.of(inputs)
    inp, moved = _to_meta_if_needed(model, inp)
    if moved:
        notes.append("the model has no weights (meta device): inputs were moved to meta")
    named = list(model.named_parameters())
    params = {id(p): n for n, p in named}
    buffers = {id(b): n for n, b in model.named_buffers()}
    recorder = Recorder(params, buffers, watcher)
    start = time.perf_counter()
    with ExitStack() as stack:
        restored = stack.enter_context(_preserved(model, train))
        modules = stack.enter_context(module_scopes(model, recorder))
        stack.enter_context(torch.random.fork_rng(devices=_cuda_devices(model, inp)))
        stack.enter_context(torch.enable_grad() if grad else torch.no_grad())
        _add_inputs(recorder, model, inp)
        out = _run(model, inp, recorder)
        outputs = tuple(dict.fromkeys(
            i for i in (recorder.producer(t) for t in _output_tensors(out)) if i is not None))
        del out
    seconds = time.perf_counter() - start
    notes += restored + _value_read_notes(recorder)
    return Graph(
        nodes=tuple(recorder.nodes), inputs=tuple(n.id for n in recorder.nodes if n.is_input),
        outputs=outputs, model=type(model).__name__, modules=modules, notes=tuple(notes),
        param_sizes={n: p.numel() for n, p in named},
        device=_device(model, inp), seconds=seconds,
    )


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
    try:
        ps = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        ps = []
    names = [p.name for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return (names + [str(i) for i in range(len(names), count)])[:count] if count else []


def _output_tensors(out: Any) -> list[Tensor]:
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


@contextmanager
def _preserved(model: nn.Module, train: bool) -> Iterator[list[str]]:
    """Eval mode (unless ``train``) for the run; afterwards training flags and buffers as found."""
    flags = [(m, m.training) for m in model.modules()]
    saved = [(n, b, b.detach().clone()) for n, b in model.named_buffers()
             if not b.is_meta and not b.is_inference()]
    notes: list[str] = []
    if model.training and not train:
        notes.append("recorded in eval mode (the model was in train mode; it is restored)")
    try:
        model.train(train)
        yield notes
    finally:
        for m, flag in flags:
            m.training = flag
        with torch.no_grad():
            for name, buf, copy in saved:  # kernels such as batch_norm write without a version bump
                if not torch.equal(buf, copy):
                    buf.copy_(copy)
                    notes.append(f"the forward pass changed buffer {name!r}; it was restored")


def _to_meta_if_needed(model: nn.Module, inp: Inputs) -> tuple[Inputs, bool]:
    params = list(model.parameters())
    if not params or not all(p.is_meta for p in params):
        return inp, False
    found = gather_tensors(list(inp.args) + list(inp.kwargs.values()), [])
    if all(t.is_meta for t in found):
        return inp, False

    def meta(v: Any) -> Any:
        if isinstance(v, Tensor):
            return v.to("meta")
        if isinstance(v, (list, tuple)) and not isinstance(v, torch.Size):
            return type(v)(meta(x) for x in v)
        if isinstance(v, dict):
            return {k: meta(x) for k, x in v.items()}
        return v

    return Inputs(tuple(meta(a) for a in inp.args), {k: meta(v) for k, v in inp.kwargs.items()}), True


def _tensors(model: nn.Module, inp: Inputs) -> Iterator[Tensor]:
    yield from model.parameters()
    yield from gather_tensors(list(inp.args) + list(inp.kwargs.values()), [])


def _cuda_devices(model: nn.Module, inp: Inputs) -> list[int]:
    return sorted({t.device.index or 0 for t in _tensors(model, inp) if t.is_cuda})


def _device(model: nn.Module, inp: Inputs) -> str:
    return next((str(t.device) for t in _tensors(model, inp)), "cpu")


def _value_read_notes(recorder: Recorder) -> list[str]:
    if not recorder.value_reads:
        return []
    parts = ", ".join(f"Tensor.{op} in {mod or 'the root module'!r} ×{k}"
                      for (op, mod), k in sorted(recorder.value_reads.items()))
    total = sum(recorder.value_reads.values())
    return [f"meta device: {total} read(s) of tensor values answered with placeholders ({parts}); "
            "the path recorded may differ from a run with real weights"]
