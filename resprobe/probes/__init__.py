"""Probes: each measures a captured model and returns a ProbeResult."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..blocks import Block
from ..data import Data, example_data
from ..graph import Graph
from ..inputs import Inputs
from ..measure import Measurement, Settings, measure
from ..report import ProbeResult

__all__ = ["NO_BLOCKS", "ProbeContext"]

NO_BLOCKS = "there are no residual blocks"


@dataclass(frozen=True)
class ProbeContext:
    """What a probe works on. ``replayable`` is False when the graph was read from a file
    (an ExportedProgram or TorchScript archive) rather than recorded from ``model``.

    ``measurement()`` runs the shared instrumented pass over ``data`` once (the refinement
    and gradient probes both read it); ``objective`` is a name or a callable
    (see ``resprobe.objective``)."""

    model: nn.Module
    inputs: Inputs
    graph: Graph
    blocks: list[Block]
    replayable: bool = True
    data: Data | None = None
    objective: Any = None
    settings: Settings = field(default_factory=Settings)
    progress: Callable[[int, int], None] | None = None
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def measurable(self) -> str | None:
        """Why the model cannot be run for measurement, or None when it can."""
        if not self.replayable:
            return "the graph was read from a file, not recorded from a runnable model"
        if self.graph.device == "meta":
            return "the model has no values (meta device)"
        if not any(b.is_residual for b in self.blocks):
            return NO_BLOCKS
        return None

    def not_run(self, probe: str, why: str | None = None) -> ProbeResult | None:
        """A ``measured: 0`` result saying why ``probe`` cannot run (``why``, by default
        ``measurable``), or None when it can."""
        why = self.measurable if why is None else why
        return None if why is None else ProbeResult(probe, {"measured": 0}, {}, (f"not run: {why}",))

    def no_gradient(self) -> str | None:
        """Why the measured gradients say nothing (exactly zero at every block), or None."""
        m = self.measurement()
        norms = [v["grad_norm"] for v in m.blocks.values() if v.get("grad_norm") is not None]
        if not norms or any(norms):
            return None
        return (f"the objective ({m.objective['name']}) gives exactly zero gradient at every block: "
                "the model maps every input to the same output (a zero-initialised head, as in "
                "torchvision's ViT?); pass --objective package.module:fn reading earlier features, "
                "or measure trained weights")

    def measurement(self) -> Measurement:
        """The shared measurement (computed on first use; a failure is kept and raised again
        for every probe that needs it, without measuring twice)."""
        if "measurement_error" in self.cache:
            raise self.cache["measurement_error"]
        if "measurement" not in self.cache:
            data = self.data or example_data(self.inputs)
            try:
                self.cache["measurement"] = measure(self.model, self.graph, self.blocks, data,
                                                    objective=self.objective, settings=self.settings,
                                                    progress=self.progress)
            except Exception as err:
                self.cache["measurement_error"] = err
                raise
        got: Measurement = self.cache["measurement"]
        return got
