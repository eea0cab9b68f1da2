"""resprobe for Lightning: ``ResprobeCallback`` watches a LightningModule's residual blocks as it trains."""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

import resprobe

__all__ = ["ResprobeCallback"]

_SET_BY_CALLBACK = ("start", "optimizer")


class ResprobeCallback(pl.Callback):
    """Measure the residual blocks on every ``every``-th optimizer step of ``Trainer.fit``.

    At the start of training it calls ``resprobe.watch`` on the LightningModule (or on its
    submodule ``module``, a dotted attribute path such as ``"model"``, for a ``training_step``
    that calls ``self.model(x)`` rather than ``self(x)``), with step numbers from
    ``trainer.global_step`` (a resumed run goes on counting) and Lightning's GradScaler
    under 16-bit mixed precision. Each optimizer step is counted once, after its backward
    passes and before the optimizer runs, so under ``accumulate_grad_batches`` a measured
    step holds every micro-batch of it. Each measured step goes to
    ``log_dir/resprobe-run.jsonl`` (default ``<trainer.log_dir>/resprobe``) and its scalars
    (``resprobe/<metric>/<layer>``, ``resprobe/effective_depth/stream<id>``; names relative
    to the watched module) to the Trainer's loggers at that step. ``watch_options`` go to
    ``resprobe.watch`` (``probes``, ``settings``, ``iterative``, ``scaler``, ``tensorboard``:
    off by default, the loggers draw the charts). Every hook is removed when training ends or
    fails; ``watch`` is the handle (``records``, ``last``, ``header``), kept after the fit."""

    def __init__(self, every: int = 50, log_dir: str | os.PathLike[str] | None = None, *,
                 module: str | None = None, **watch_options: Any):
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise resprobe.UsageError(f"every must be a whole number >= 1, not {every!r}")
        taken = [k for k in _SET_BY_CALLBACK if k in watch_options]
        if taken:
            raise resprobe.UsageError(f"ResprobeCallback sets {', '.join(taken)} itself (from the Trainer); "
                                      "leave it out")
        self.every, self.log_dir, self.module = every, log_dir, module
        self.watch_options = {"tensorboard": False, **watch_options}
        self.watch: resprobe.Watch | None = None
        self._open = False
        self._warned = False

    # -- Lightning's hooks ---------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start watching (after a checkpoint's training state is restored)."""
        self._close()
        options = dict(self.watch_options)
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None:
            options.setdefault("scaler", scaler)
        self.watch = resprobe.watch(self._watched(pl_module), every=self.every,
                                    log_dir=self._log_dir(trainer), start=trainer.global_step, **options)
        self._open = True

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Any) -> None:
        """End the step: its backward passes are done, the optimizer has not run yet (so a
        GradScaler's scale is still the one its gradients carry)."""
        if not self._open or self.watch is None:
            return
        w = self.watch
        due = w.due
        record = w.step()
        if record is not None:
            self._log(trainer, w, record)
        elif due and w.header is None and not self._warned:
            self._warned = True
            rank_zero_warn(
                f"ResprobeCallback measured nothing at step {w.step_number - 1}: the watched module's "
                "forward was not called with autograd on during training_step. If training_step calls a "
                "submodule (self.model(x)) rather than self(x), pass ResprobeCallback(module='model').")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        self._close()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._close()

    # -- helpers -----------------------------------------------------------------------------------
    def _watched(self, pl_module: pl.LightningModule) -> nn.Module:
        if self.module is None:
            return pl_module
        try:
            return pl_module.get_submodule(self.module)
        except AttributeError as err:
            raise resprobe.UsageError(f"ResprobeCallback(module={self.module!r}): {type(pl_module).__name__} "
                                      f"has no such submodule ({err})") from err

    def _log_dir(self, trainer: pl.Trainer) -> str | os.PathLike[str]:
        if self.log_dir is not None:
            return self.log_dir
        root = trainer.log_dir or trainer.default_root_dir
        return os.path.join(root, "resprobe")

    def _log(self, trainer: pl.Trainer, w: resprobe.Watch, record: resprobe.RunStep) -> None:
        if not trainer.is_global_zero or w.header is None or not trainer.loggers:
            return
        metrics = resprobe.runlog.scalars(w.header, record)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=record.step)
            logger.save()

    def _close(self) -> None:
        if self._open and self.watch is not None:
            self._open = False
            self.watch.close()
