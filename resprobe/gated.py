"""Gated: run a model with a scale on every residual branch (0 deletes a block, 1 leaves it),
over its captured graph; lesions and the attribution probe are built on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from .blocks import Block
from .errors import AnalysisError
from .graph import Graph
from .inputs import Inputs
from .instrument import Instrument, Mismatch
from .session import Session

__all__ = ["Gated", "gated"]


class _Silent:
    """A listener that keeps nothing (for passes that only need the output)."""

    def joined(self, i: int, s: Tensor, b: Tensor, y: Tensor, plain: bool = False) -> None:
        pass

    def delta(self, i: int, grad: Tensor, b: Tensor | None) -> None:
        pass

    def entered(self, i: int, role: str, grad: Tensor) -> None:
        pass

    def node(self, node_id: int, out: Tensor) -> None:
        pass


class Gated:
    """The model with a scale on every residual branch (see ``gated``). ``session`` holds the
    model (``gated`` enters it); ``model`` and ``tree`` are its unwrapped model and module tree."""

    def __init__(self, model: Any, tree: Any, plan: Instrument, train: bool = False):
        self.session = Session(model, train=train, tree=tree)
        self.model, self.tree, self.plan, self.train = self.session.model, self.session.tree, plan, train
        self.names = [b.name for b in plan.blocks]
        self.mismatches: list[Mismatch] = []

    def run(self, inputs: Any, scales: Tensor | None = None) -> Any:
        """The model's output on ``inputs`` with block i's branch multiplied by ``scales[..., i]``
        (shape ``[n_blocks]``, or ``[N, n_blocks]`` for one scale per sample; None = 1).
        Gradients flow to ``scales``. Raises ``AnalysisError`` if the model took another path
        than the captured graph (a graph captured again with the current grad mode is adopted
        when its blocks are the same)."""
        inp = Inputs.of(inputs)
        got = self.session.follow(inp, self.plan, lambda plan: self._run(plan, inp, scales), Instrument,
                                  grad=torch.is_grad_enabled())
        self.plan = got.plan
        if got.result is None:
            m = self.mismatches[0]
            raise AnalysisError(f"the model took a different path than when it was captured (node {m.node}: "
                                f"expected {m.expected}, got {m.got}); capture it on inputs of the same kind")
        return got.result[0]

    def _run(self, plan: Instrument, inp: Inputs, scales: Tensor | None) -> tuple[Any] | None:
        """The output of one pass with ``scales`` on the branches (None: it left the graph)."""
        plan.branch_forward.clear()
        if scales is not None:
            for i in range(len(self.names)):
                plan.branch_forward[i] = scales[..., i]
        try:
            out, self.mismatches = self.session.instrumented(plan, inp, _Silent(), torch.zeros(()))
        finally:
            plan.branch_forward.clear()
        return None if self.mismatches else (out,)


@contextmanager
def gated(model: Any, graph: Graph, blocks: list[Block], *, train: bool = False) -> Iterator[Gated]:
    """A scope in which ``g.run(inputs, scales)`` runs ``model`` with each residual branch
    of ``blocks`` scaled (0 deletes a block, 1 leaves it). The model is restored on exit
    (training flags, buffers, RNG state); nothing stays installed on it."""
    g = Gated(model, None, Instrument(graph, blocks), train)
    with g.session:
        yield g
