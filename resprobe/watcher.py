"""watch(model, every=N): per-block numbers measured on a training run's own passes, every N-th step."""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections import Counter
from contextlib import ExitStack
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn

from . import _distributed
from ._held import Held
from ._plan import Plan
from ._recorder import Recorder, module_scopes
from ._stats import Collector, Sums
from ._version import __version__
from ._watch_step import StepNumbers
from .blocks import find_blocks
from .capture import _add_inputs, record
from .data import batch_size
from .errors import UsageError
from .inputs import Inputs
from .instrument import BRANCH, SKIP, Mismatch
from .measure import Settings, attention_mask
from .runlog import RunBlock, RunHeader, RunStep, RunWriter

__all__ = ["PROBES", "Watch", "watch"]

PROBES = ("refinement", "gradients")
MAX_RECAPTURES = 3  # passes in a row that leave a fresh capture's graph before the watch gives up


class _Pass(Collector):
    """The listener of one watched forward pass, with its own sums. Its backward statistics are
    finished when autograd's backward ends (the engine's end-of-backward callback), so the
    gradients it looked at are not kept past the backward."""

    def __init__(self, plan: Plan, mask: Tensor | None, samples: int, gradients: bool):
        super().__init__(plan.names, [], [], Sums(), mask)
        self.samples, self.gradients = samples, gradients
        self.scale = 1.0  # the loss scale of its backward pass (a GradScaler's), divided out
        self.queued = self.finished = False
        self.expected: Counter[tuple[int, str]] = Counter()  # gates made that report to (block, role)
        self.arrived: Counter[tuple[int, str]] = Counter()

    def armed(self, sinks: list[tuple[str, int]]) -> None:
        for role, i in sinks:
            self.expected[(i, role)] += 1

    def joined(self, i: int, s: Tensor, b: Tensor, y: Tensor, plain: bool = False) -> None:
        super().joined(i, s, b, y, plain)
        del self.skips[i], self.outs[i]  # kept by a measurement for stream statistics only

    def delta(self, i: int, grad: Tensor, b: Tensor | None) -> None:
        if self._backward():
            super().delta(i, grad, b)
            self._complete(i)

    def entered(self, i: int, role: str, grad: Tensor) -> None:
        if self._backward():
            super().entered(i, role, grad)
            self.arrived[(i, role)] += 1
            self._complete(i)

    def _complete(self, i: int) -> None:
        """Finish block ``i`` as soon as every gate reporting to it has fired: its gradients
        are let go then rather than at the end of the backward pass."""
        if i in self.delta_norm and all(0 < self.expected[(i, r)] <= self.arrived[(i, r)]
                                        for r in (SKIP, BRANCH)):
            self.finish_block(i)

    def _backward(self) -> bool:
        if not self.gradients or self.finished:
            return False
        if not self.queued:
            self.queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._ended)
        return True

    def _ended(self) -> None:
        self.finish_backward()
        self.finished = True


class Watch:
    """A model watched while it trains (see ``watch``): ``step()`` after each optimizer step
    (or give ``optimizer=`` and it is called for you); ``close()`` (or leave the ``with``)
    removes every hook. ``records`` holds the measured steps, ``last`` the latest; ``stopped``
    says why nothing more is measured, when that happens (the training itself is never
    interrupted: a failure inside the measurement stops the watch with a warning)."""

    def __init__(self, model: nn.Module, *, every: int = 50, log_dir: Any = None,
                 probes: tuple[str, ...] = PROBES, optimizer: Any = None, tensorboard: bool | None = None,
                 settings: Settings | None = None, start: int = 0, scaler: Any = None,
                 iterative: bool = False):
        _check(model, every, probes)
        self.iterative = iterative
        self.held = Held(model, train=None)  # never entered: the model, its tree and device
        self.model, self.notes, self.tree = self.held.model, self.held.notes, self.held.tree
        self.every, self.step_number, self.probes = every, start, tuple(probes)
        self.settings, self.scaler = settings or Settings(), scaler
        self.records: list[RunStep] = []
        self.plan: Plan | None = None
        self.header: RunHeader | None = None
        self.rank, self.world = _distributed.rank(), _distributed.world_size()
        self._numbers: StepNumbers | None = None
        self._passes: list[_Pass] = []
        self._weights: dict[str, Tensor] | None = None  # parameter norms as the step's forward saw them
        self._active: tuple[ExitStack, Recorder, list[Mismatch], _Pass] | None = None
        self._capturing = False
        self._misses = 0  # measured passes in a row that left the captured graph
        self.stopped: str | None = None  # why nothing is measured any more
        self._events: list[str] = []
        self._started = time.time()
        writes = log_dir is not None and self.rank == 0
        self._writer = RunWriter(log_dir, append=start > 0) if writes else None
        self._tensorboard = _tensorboard(log_dir, tensorboard) if self.rank == 0 else None
        self._handles = [self.model.register_forward_pre_hook(self._pre, with_kwargs=True),
                         self.model.register_forward_hook(self._post, with_kwargs=True, always_call=True)]
        if optimizer is not None:
            if _scaling(scaler):
                self.close()
                raise UsageError("with a GradScaler, call watch.step() yourself after scaler.update(): a "
                                 "step the scaler skips (inf or NaN gradients) never reaches the optimizer's "
                                 "hook")
            self._handles.append(optimizer.register_step_post_hook(lambda *_: self.step()))

    # -- steps -------------------------------------------------------------------------------
    @property
    def due(self) -> bool:
        """Whether the current step is measured (its number is a multiple of ``every``)."""
        return self.stopped is None and self.step_number % self.every == 0

    @property
    def last(self) -> RunStep | None:
        return self.records[-1] if self.records else None

    def step(self) -> RunStep | None:
        """End the current training step: when it was measured, its record (also written to
        the log); then count the next step. Under torch.distributed every rank takes part in
        every measured step's reduction, even one that stopped measuring (so none waits)."""
        measured = self.step_number % self.every == 0 and (self.stopped is None or self.world > 1)
        got = None
        if measured:
            try:
                got = self._flush()
            except Exception as err:  # the training goes on; the watch stops and says why
                self._stop(err)
        self.step_number += 1
        return got

    def _flush(self) -> RunStep | None:
        passes, self._passes = self._passes, []
        ready = bool(passes) and self._numbers is not None and self.stopped is None
        if self.world > 1:  # every rank ready, with sums laid out alike, or no rank adds up
            layout = repr(sorted((str(k), len(parts)) for p in passes for k, parts in p.sums.v.items()))
            if not _distributed.agree(ready, layout):
                if ready:
                    self._events.append(f"step {self.step_number}: not every process measured it alike (a "
                                        "process took another path or stopped): not recorded")
                return None
        if not ready or self._numbers is None:
            return None
        scale = 1.0 / self.world / passes[0].scale  # DDP averages the ranks' gradients; loss scaling
        events, self._events = self._events, []
        weights, self._weights = self._weights, None
        record = self._numbers.record(passes, self.step_number, self._started, scale, tuple(events), weights)
        record = _with_gradient_notes(record, "gradients" in self.probes)
        self.records.append(record)
        if self._writer is not None:
            self._writer.step(record)
        if self._tensorboard is not None and self.header is not None:
            self._tensorboard.step(self.header, record)
        return record

    # -- the forward hooks -----------------------------------------------------------------------
    def _pre(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._capturing or self._active is not None or not self.due or not torch.is_grad_enabled():
            return
        if _compiling():
            self.stopped = ("the model ran under torch.compile: nothing is measured (watch the eager "
                            "model, or compile after watching)")
            return
        inp = Inputs(tuple(args), dict(kwargs))
        try:
            if self.plan is None:
                self._capture(inp)
            if self.plan is not None:
                self._begin(self.plan, inp)
        except Exception as err:  # the training goes on; the watch stops and says why
            self._stop(err)

    def _stop(self, err: BaseException) -> None:
        """Stop measuring (the run itself goes on) and say why, once, as a warning."""
        if self._active is not None:
            self._active[0].close()
            self._active = None
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
        self.stopped = f"stopped measuring at step {self.step_number}: {type(err).__name__}: {first}"
        self._events.append(self.stopped)
        warnings.warn(f"resprobe.watch {self.stopped}", RuntimeWarning, stacklevel=3)

    def _capture(self, inp: Inputs) -> None:
        """The model's graph on this batch, once (one extra forward, its RNG, buffers and
        caches put back, so the training run is unchanged)."""
        self._capturing = True
        try:
            graph = record(self.model, inp, grad=True, train=None)
        finally:
            self._capturing = False
        plan = Plan(graph, find_blocks(graph))
        if not plan.blocks:
            self.stopped = "no residual block was found in the model: nothing to measure"
            self._events.append(self.stopped)
            return
        self.plan = plan
        self._numbers = StepNumbers(plan, self.tree, self.settings, self.world)
        if self.header is None:
            self._start(plan)
        elif [b.name for b in plan.blocks] != [b.name for b in self.header.blocks]:
            self._events.append("the model's residual blocks changed; records name the blocks measured")

    def _start(self, plan: Plan) -> None:
        blocks = tuple(RunBlock(plan.names[k], sid, pos + 1)
                       for sid, idx in zip(plan.stream_ids, plan.streams) for pos, k in enumerate(idx))
        layers = tuple((name, tuple(plan.names[k] for k in ks)) for name, ks, _ in plan.layers)
        self.header = RunHeader(
            model=type(self.model).__name__, blocks=blocks, layers=layers, every=self.every,
            world_size=self.world, version=__version__,
            started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            notes=tuple(self.notes))  # the capture's own notes are about a pass that was put back
        if self._writer is not None:
            self._writer.header(self.header)
        if self._tensorboard is not None:
            self._tensorboard.start(self.header)

    def _begin(self, plan: Plan, inp: Inputs) -> None:
        """Gate this pass: the recorder's rewrites put the gates at the joins."""
        listener = _Pass(plan, attention_mask(inp), batch_size(inp), "gradients" in self.probes)
        plan.instrument.keep_branches = self.iterative
        anchor = torch.zeros((), device=self.held.device_for(inp), requires_grad=True)
        mismatches: list[Mismatch] = []
        recorder = Recorder(self.tree.param_ids, self.tree.buffer_ids)
        recorder.rewrite = plan.instrument.rewrites(recorder, listener, anchor, mismatches)
        stack = ExitStack()
        self._active = (stack, recorder, mismatches, listener)  # closed by _stop if what follows fails
        stack.enter_context(module_scopes(self.tree.by_path, recorder))
        _add_inputs(recorder, self.model, inp)
        stack.enter_context(recorder)

    def _post(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        active, self._active = self._active, None
        if active is None:
            return
        stack, recorder, mismatches, listener = active
        stack.close()
        try:
            self._ended(recorder, mismatches, listener, output)
        except Exception as err:
            self._stop(err)

    def _ended(self, recorder: Recorder, mismatches: list[Mismatch], listener: _Pass, output: Any) -> None:
        assert self.plan is not None
        if not self.plan.instrument.check(recorder, mismatches) or output is None:
            listener.gradients = False
            if output is not None:  # the model left its graph: capture it again next time
                self.plan = None
                self._misses += 1
                self._events.append("the model took another path than when captured: captured again")
                if self._misses >= MAX_RECAPTURES:
                    self.stopped = (f"the model left its captured graph {self._misses} times in a row "
                                    f"(at node {mismatches[0].node}: expected {mismatches[0].expected}, got "
                                    f"{mismatches[0].got}): nothing more is measured")
            return
        self._misses = 0
        listener.ungated = self.plan.instrument.ungated()
        if _scaling(self.scaler):  # the loss scale this pass's backward runs under (update() comes after)
            listener.scale = float(self.scaler.get_scale())
        self._passes.append(listener)
        if self._weights is None and self._numbers is not None:
            self._weights = self._numbers.weight_norms()

    # -- closing -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Remove every hook (the model is as found); a step measured but not ended is written."""
        if self._active is not None:
            self._active[0].close()
            self._active = None
        for handle in self._handles:
            handle.remove()
        self._handles = []
        try:
            if self._passes and self.due and self.world == 1:
                self._flush()
        except Exception as err:
            self._stop(err)
        finally:
            if self._writer is not None:
                self._writer.close()
            if self._tensorboard is not None:
                self._tensorboard.close()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def watch(model: nn.Module, *, every: int = 50, log_dir: Any = None, probes: tuple[str, ...] = PROBES,
          optimizer: Any = None, tensorboard: bool | None = None, settings: Settings | None = None,
          start: int = 0, scaler: Any = None, iterative: bool = False) -> Watch:
    """Watch ``model`` while it trains: on every ``every``-th step (step numbers from
    ``start``), the residual blocks are measured on that step's own forward and backward
    passes (every micro-batch of it under gradient accumulation); other steps run untouched.

    Call ``step()`` on the handle after each optimizer step, or pass ``optimizer`` (its step
    hook calls it). Parameter gradients, the loss and the optimizer's work are bit-identical to
    an unwatched run. The first measured forward captures the model's graph once (one extra
    forward pass on that batch, with the RNG, buffers and caches put back).

    Each measured step becomes a ``RunStep`` (``records``), written to
    ``log_dir/resprobe-run.jsonl`` and, when tensorboard is installed (or ``tensorboard=True``),
    as TensorBoard scalars in ``log_dir``. ``probes``: ``refinement`` (forward numbers) and
    ``gradients`` (backward numbers, with the effective-depth estimate). Gradient magnitudes are
    those of the loss you backpropagate (under DDP: of the averaged gradient; with a GradScaler
    passed as ``scaler``, unscaled). ``iterative`` also measures ``iterative_cos`` and
    ``lesion_first_order``, which hold each block's branch output until its backward (about one
    activation per block more memory; None in the records otherwise). Forward passes without
    autograd (evaluation) are never measured. Under ``torch.distributed`` every rank's sums
    are added up (one all-reduce per measured step) and rank 0 writes."""
    return Watch(model, every=every, log_dir=log_dir, probes=probes, optimizer=optimizer,
                 tensorboard=tensorboard, settings=settings, start=start, scaler=scaler,
                 iterative=iterative)


def _check(model: Any, every: int, probes: tuple[str, ...]) -> None:
    if not isinstance(model, nn.Module):
        raise UsageError(f"watch() takes a torch.nn.Module, not {type(model).__name__}")
    if isinstance(model, nn.DataParallel) and len(model.device_ids or []) > 1:
        raise UsageError("watch() cannot follow nn.DataParallel's replicas (one thread per device): use "
                         "DistributedDataParallel, whose ranks' numbers watch adds up")
    if type(model).__name__ == "OptimizedModule":
        raise UsageError("watch() needs the eager model, not a torch.compile one: measured steps run the "
                         "model's own ops through gates; pass model._orig_mod and train it uncompiled")
    if not isinstance(every, int) or every < 1:
        raise UsageError(f"every must be a whole number >= 1, not {every!r}")
    unknown = [p for p in probes if p not in PROBES]
    if unknown or not probes:
        raise UsageError(f"watch() measures the probes {', '.join(PROBES)}; got "
                         f"{', '.join(probes) or 'none'}")


def _with_gradient_notes(record: RunStep, gradients: bool) -> RunStep:
    """The record, with a note where gradient numbers are missing and why that may be."""
    missing = [n for n, d in record.blocks.items() if d.get("grad_norm") is None]
    if not gradients or not missing:
        return record
    note = (f"no gradient reached the gates of {len(missing)} block(s) ({', '.join(missing[:3])}"
            f"{' …' if len(missing) > 3 else ''}), so their gradient numbers are missing: call backward() "
            "before step(); activation checkpointing with use_reentrant=True re-runs blocks without "
            "the gates in the backward pass (use_reentrant=False keeps them)")
    return dataclasses.replace(record, notes=(*record.notes, note))


def _compiling() -> bool:
    """Whether torch.compile is tracing this call (False on a torch that cannot say)."""
    check = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    if check is None:
        check = getattr(getattr(torch, "_dynamo", None), "is_compiling", None)
    return bool(check is not None and check())


def _scaling(scaler: Any) -> bool:
    """Whether ``scaler`` is a GradScaler that scales the loss."""
    return scaler is not None and bool(getattr(scaler, "is_enabled", lambda: False)())


def _tensorboard(log_dir: Any, wanted: bool | None) -> Any:
    if log_dir is None or wanted is False:
        return None
    from ._tensorboard import TensorBoardLog, available

    if not available():
        if wanted:
            raise UsageError("tensorboard is not installed: pip install tensorboard")
        return None
    return TensorBoardLog(log_dir)


