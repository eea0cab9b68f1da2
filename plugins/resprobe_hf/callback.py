"""``ResprobeTrainerCallback``: a Hugging Face ``Trainer`` callback watching the model's residual blocks."""

from __future__ import annotations

import os
from typing import Any

import transformers

import resprobe

__all__ = ["ResprobeTrainerCallback"]

_SET_BY_CALLBACK = ("start", "optimizer")


class ResprobeTrainerCallback(transformers.TrainerCallback):
    """Measure the residual blocks on every ``every``-th optimizer step of ``Trainer.train``.

    At the start of training it calls ``resprobe.watch`` on the Trainer's model, with step
    numbers from ``state.global_step`` (a resumed run goes on counting) and the mixed-precision
    GradScaler when there is one. Each optimizer step is counted once, after the backward
    passes of all its micro-batches (``gradient_accumulation_steps``) and before the optimizer
    runs. Each measured step goes to ``log_dir/resprobe-run.jsonl`` (default
    ``<output_dir>/resprobe``, or under ``logging_dir`` where the arguments have one), and its
    scalars (``resprobe/<metric>/<layer>``, ``resprobe/effective_depth/stream<id>``) into the
    Trainer's next logs (``state.log_history`` and the callbacks after this one): resprobe's
    step k (optimizer steps counted from 0) appears at the Trainer's step k + 1 or the next
    logging step after it, whose loss covers it; when several measured steps fall between two
    logs, the latest is logged. The Trainer puts the reporting integrations (``report_to``:
    TensorBoard, W&B, …) before the callbacks it is given, so for them to receive the scalars
    call ``attach(trainer)``, which puts this callback first.

    ``watch_options`` go to ``resprobe.watch`` (``probes``, ``settings``, ``iterative``,
    ``scaler``, ``tensorboard``: off by default, the Trainer's integrations draw the charts).
    Every hook is removed when training ends (after a failed ``train()``, at the next one's
    start, or with ``watch.close()``); ``watch`` is the handle (``records``, ``last``,
    ``header``), kept after training."""

    def __init__(self, every: int = 50, log_dir: str | os.PathLike[str] | None = None, **watch_options: Any):
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise resprobe.UsageError(f"every must be a whole number >= 1, not {every!r}")
        taken = [k for k in _SET_BY_CALLBACK if k in watch_options]
        if taken:
            raise resprobe.UsageError(f"ResprobeTrainerCallback sets {', '.join(taken)} itself (from the "
                                      "Trainer); leave it out")
        self.every, self.log_dir = every, log_dir
        self.watch_options = {"tensorboard": False, **watch_options}
        self.watch: resprobe.Watch | None = None
        self._open = False
        self._counted = False  # this optimizer step was counted before the optimizer ran
        self._pending: dict[str, float] = {}

    def attach(self, trainer: transformers.Trainer) -> ResprobeTrainerCallback:
        """Make this the Trainer's first callback (adding it if absent), so the reporting
        integrations see the scalars it adds to the logs; returns the callback."""
        callbacks = trainer.callback_handler.callbacks
        if self in callbacks:
            callbacks.remove(self)
        callbacks.insert(0, self)
        return self

    # -- the Trainer's events ------------------------------------------------------------------
    def on_train_begin(self, args: transformers.TrainingArguments, state: transformers.TrainerState,
                       control: transformers.TrainerControl, model: Any = None, optimizer: Any = None,
                       **kwargs: Any) -> None:
        self._close()
        if model is None:
            raise resprobe.UsageError("ResprobeTrainerCallback: the Trainer gave no model to watch")
        options = dict(self.watch_options)
        scaler = getattr(optimizer, "scaler", None)  # accelerate's optimizer under fp16
        if scaler is not None:
            options.setdefault("scaler", scaler)
        root = getattr(args, "logging_dir", None) or args.output_dir or "."
        log_dir = self.log_dir if self.log_dir is not None else os.path.join(root, "resprobe")
        self.watch = resprobe.watch(model, every=self.every, log_dir=log_dir, start=state.global_step,
                                    **options)
        self._open, self._counted, self._pending = True, False, {}

    def on_pre_optimizer_step(self, args: transformers.TrainingArguments, state: transformers.TrainerState,
                              control: transformers.TrainerControl, **kwargs: Any) -> None:
        """End the step once its backward passes are done and before the optimizer (and a
        GradScaler's update) runs."""
        self._advance(state)
        self._counted = True

    def on_optimizer_step(self, args: transformers.TrainingArguments, state: transformers.TrainerState,
                          control: transformers.TrainerControl, **kwargs: Any) -> None:
        """End the step here when the Trainer has no pre-optimizer event."""
        if not self._counted:
            self._advance(state)
            self._counted = True

    def on_step_end(self, args: transformers.TrainingArguments, state: transformers.TrainerState,
                    control: transformers.TrainerControl, **kwargs: Any) -> None:
        """End the step here when the Trainer has no optimizer events (transformers before 4.42:
        the gradients are zeroed by then, so ``param_grad_norm`` is not measured)."""
        if not self._counted:
            self._advance(state)
        self._counted = False

    def on_log(self, args: transformers.TrainingArguments, state: transformers.TrainerState,
               control: transformers.TrainerControl, logs: dict[str, float] | None = None,
               **kwargs: Any) -> None:
        """Add the latest measured step's scalars (once) to the logs and their record in
        ``state.log_history``."""
        if not self._pending or logs is None or not state.is_world_process_zero:
            return
        metrics, self._pending = self._pending, {}
        last = state.log_history[-1] if state.log_history else None
        if last is not None and all(k in last and last[k] is v for k, v in logs.items()):
            last.update(metrics)  # the entry the Trainer made of these logs
        logs.update(metrics)

    def on_train_end(self, args: transformers.TrainingArguments, state: transformers.TrainerState,
                     control: transformers.TrainerControl, **kwargs: Any) -> None:
        self._close()

    # -- helpers -----------------------------------------------------------------------------------
    def _advance(self, state: transformers.TrainerState) -> None:
        if not self._open or self.watch is None:
            return
        w = self.watch
        record = w.step()
        if record is not None and w.header is not None and state.is_world_process_zero:
            self._pending = resprobe.runlog.scalars(w.header, record)

    def _close(self) -> None:
        if self._open and self.watch is not None:
            self._open = False
            self.watch.close()
