"""Probes: each measures a captured model and returns a ProbeResult."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..blocks import Block
from ..graph import Graph
from ..inputs import Inputs

__all__ = ["ProbeContext"]


@dataclass(frozen=True)
class ProbeContext:
    """What a probe works on. ``replayable`` is False when the graph was read from a file
    (an ExportedProgram or TorchScript archive) rather than recorded from ``model``."""

    model: nn.Module
    inputs: Inputs
    graph: Graph
    blocks: list[Block]
    replayable: bool = True
