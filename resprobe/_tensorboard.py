"""A watched run's numbers as TensorBoard scalars (``torch.utils.tensorboard``), one chart per
metric with a line per layer (or per block where the blocks form no layers)."""

from __future__ import annotations

import importlib.util
from typing import Any

from .runlog import SCALARS, RunHeader, RunStep, scalars

__all__ = ["TensorBoardLog", "available"]


def available() -> bool:
    """Whether the tensorboard package is installed (torch's writer needs it)."""
    return importlib.util.find_spec("tensorboard") is not None


class TensorBoardLog:
    """A ``SummaryWriter`` on ``log_dir``; ``start`` lays out the charts, ``step`` adds a record."""

    def __init__(self, log_dir: Any):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def start(self, header: RunHeader) -> None:
        charts = {f"{metric}": ["Multiline", [f"resprobe/{metric}/.*"]] for metric in SCALARS}
        charts["effective_depth"] = ["Multiline", ["resprobe/effective_depth/.*"]]
        self.writer.add_custom_scalars({"resprobe": charts})

    def step(self, header: RunHeader, record: RunStep) -> None:
        for tag, value in scalars(header, record).items():
            self.writer.add_scalar(tag, value, record.step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
