"""Probes: each measures a captured model and returns a ProbeResult.

This package and the built-in probe modules import torch only when a probe runs: the CLI
loads every probe to read its options (``resprobe.Option``) for ``resprobe analyze --help``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..report import ProbeResult

if TYPE_CHECKING:
    from torch import nn

    from ..blocks import Block
    from ..data import Data
    from ..graph import Graph
    from ..inputs import Inputs
    from ..measure import Measurement, Settings
    from ..objective import Objective, ObjectiveSpec

__all__ = ["DEFAULT_PROBES", "NO_BLOCKS", "ProbeContext"]

DEFAULT_PROBES = ("verify", "refinement", "gradients", "depth", "lesion", "lens")  # what analyze runs
NO_BLOCKS = "there are no residual blocks"


def _default_settings() -> Settings:
    from ..measure import Settings

    return Settings()


@dataclass(frozen=True)
class ProbeContext:
    """What a probe works on. ``replayable`` is False when the graph was read from a file
    (an ExportedProgram or TorchScript archive) rather than recorded from ``model``.

    ``measurement()`` runs the shared instrumented pass over ``data`` once (the refinement
    and gradient probes both read it). ``objective`` is what the caller asked for (a name, a
    callable or an ``Objective``, see ``resprobe.objective``); ``resolved_objective()`` is
    the ``Objective`` every probe measures with, chosen once per analysis.
    ``progress(done, total)`` is called as a long phase advances (batches, lesions, depth
    steps); ``phase(label)`` names the phase when ``progress`` can show it."""

    model: nn.Module
    inputs: Inputs
    graph: Graph
    blocks: list[Block]
    replayable: bool = True
    data: Data | None = None
    objective: ObjectiveSpec = None
    settings: Settings = field(default_factory=_default_settings)
    progress: Callable[[int, int], None] | None = None
    tokenizer: Any = None  # the source's tokenizer (``Loaded.tokenizer``), to show tokens as text
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
            from ..data import example_data
            from ..measure import measure

            data = self.data or example_data(self.inputs)
            # ``auto`` not chosen yet: the measurement chooses on its first batch, and
            # resolved_objective() adopts that choice (no pass over the model of its own)
            objective = self.cache.get("objective") or (self.objective if self._auto()
                                                         else self.resolved_objective())
            try:
                with self.phase("measuring"):
                    self.cache["measurement"] = measure(self.model, self.graph, self.blocks, data,
                                                        objective=objective, settings=self.settings,
                                                        progress=self.progress)
            except Exception as err:
                self.cache["measurement_error"] = err
                raise
        got: Measurement = self.cache["measurement"]
        return got

    def resolved_objective(self, output: Any = None, inputs: Inputs | None = None,
                           targets: Any = None) -> Objective:
        """The ``Objective`` every probe measures with, chosen once per analysis: at once for
        a name other than ``auto``, a callable or an ``Objective``; for ``auto`` (or None) the
        shared measurement's choice when it has run, else the choice on the first batch of
        ``data`` (from its targets, or from one forward pass without gradients). A probe that
        has run the model on a batch already may pass its ``output`` (with the ``inputs`` and
        ``targets`` it ran on) to choose from instead."""
        from ..objective import choose_objective

        got: Objective | None = self.cache.get("objective")
        if got is None:
            spec, measured = self.objective, self.cache.get("measurement")
            if self._auto() and measured is not None:
                spec = measured.objective["name"]
            elif self._auto() and output is None:
                output, inputs, targets = self._first_output()
            got = choose_objective(spec, output, inputs or self.inputs, targets, self.model)
            self.cache["objective"] = got
        return got

    def resolved(self) -> ProbeContext:
        """This context with ``objective`` the ``Objective`` chosen once (``resolved_objective()``),
        to hand to ``resprobe.lesion``, ``exact_profile`` and the like; same cache and progress."""
        return replace(self, objective=self.resolved_objective())

    def _auto(self) -> bool:
        return self.objective is None or (isinstance(self.objective, str) and self.objective == "auto")

    def _first_output(self) -> tuple[Any, Inputs, Any]:
        """The output, inputs and targets of the first batch, for ``auto``: no output when the
        batch has targets (``auto`` picks the task loss from them alone)."""
        import torch

        from ..data import example_data
        from ..gated import gated

        inp, targets = next(iter(self.data or example_data(self.inputs)), (self.inputs, None))
        if targets is not None:
            return None, inp, targets
        with gated(self.model, self.graph, self.blocks, train=self.settings.train) as g:
            device = next((p.device for p in g.model.parameters()), torch.device("cpu"))
            inp = inp.to(device)
            with torch.no_grad():
                return g.run(inp), inp, None

    @contextmanager
    def phase(self, label: str) -> Iterator[None]:
        """A phase of the analysis (``"measuring"``, ``"lesions"``) for as long as the block
        runs: ``progress`` is told when it can show phases (it has a ``phase(label)`` method
        returning a context manager, as the CLI's does); otherwise nothing changes."""
        show = getattr(self.progress, "phase", None)
        with show(label) if callable(show) else nullcontext():
            yield
