"""``Loaded``: a model with its example inputs and where it came from, as every source gives it.

Its own module so that the file readers (``files``, ``_exported``, ``_torchscript``) and ``load``,
which calls them, all build one without importing each other in a circle."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from .errors import InputsError
from .graph import Graph
from .inputs import Inputs

__all__ = ["Loaded", "as_loaded"]


@dataclass(frozen=True)
class Loaded:
    """A model built from a source, the example inputs the source supplied (if any), and
    where its weights came from: ``"trained"``, ``"random"`` (freshly initialised),
    ``"unknown"`` or ``"none"`` (built on the meta device: structure only). Adapters and
    factories return one; ``load`` fills in ``source``. ``graph`` is set when the source was a
    graph already and must not be run (an ExportedProgram). ``inputs_description`` says what
    the example inputs are; ``tokenizer`` (a Hugging Face tokenizer or any callable alike) lets
    ``--data`` read text files."""

    model: nn.Module
    inputs: Inputs | None = None
    weights: str = "unknown"
    description: str = ""
    source: str = ""
    notes: tuple[str, ...] = ()
    graph: Graph | None = None  # set when the source is a graph already (ExportedProgram, TorchScript)
    inputs_description: str = ""  # what the example inputs are, e.g. "random images made by the adapter"
    tokenizer: Any = None  # text -> inputs (``tokenizer(lines, padding=True, ...)``), if the source has one
    seed: int | None = None  # the seed random weights were initialised with (``load``'s ``seed``)


def as_loaded(model: Any, inputs: Any = None, *, what: str = "analyse") -> Loaded:
    """``model`` as a ``Loaded``: a ``Loaded`` as it is (``inputs``, when given, replace its
    own), or an ``nn.Module`` (a DataParallel or compiled wrapper too) with ``inputs`` (a tensor,
    tuple, dict or ``Inputs``; inferred from its first layer when None and possible)."""
    if isinstance(model, Loaded):
        return model if inputs is None else replace(model, inputs=Inputs.of(inputs))
    if not isinstance(model, nn.Module):
        raise InputsError(f"cannot {what} a {type(model).__name__}; pass a torch.nn.Module (with "
                         "example inputs) or a resprobe.Loaded")
    if inputs is None:
        from .inputs import infer_inputs

        guess = infer_inputs(model)
        if guess is None:
            raise InputsError(f"{type(model).__name__} needs example inputs: pass them as the second "
                             "argument (a tensor, a tuple, a dict of keyword arguments or resprobe.Inputs)")
        return Loaded(model, guess[0], inputs_description=guess[1])
    return Loaded(model, Inputs.of(inputs), inputs_description="the example inputs given")
