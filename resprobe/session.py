"""Session: a held model (``resprobe._held.Held``: left exactly as found) that also runs the
gated forward pass: one instrumented pass that, when the model leaves the captured graph,
captures the model again and adopts the new graph when it holds the same blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from torch import Tensor

from ._held import Held, ModuleTree, Steps, preserved, unwrap
from .blocks import Block, find_blocks
from .capture import forward, record
from .graph import Graph
from .inputs import Inputs
from .instrument import Instrument, Listener, Mismatch

__all__ = ["Followed", "ModuleTree", "Planned", "Session", "Steps", "preserved", "unwrap"]


class Planned(Protocol):
    """A plan of gates for the residual blocks of one graph (an ``Instrument``, or a plan that
    holds one)."""

    blocks: list[Block]


P = TypeVar("P", bound=Planned)
R = TypeVar("R")


@dataclass(frozen=True)
class Followed(Generic[P, R]):
    """How a gated forward went. ``plan``: the plan of the last pass; ``result``: what that
    pass gave, None when it left its graph too; ``recaptured``: the first pass left the graph,
    so the model was captured again; ``adopted``: the new graph holds the same residual blocks,
    so ``plan`` (made from it) replaces the caller's for good."""

    plan: P
    result: R | None
    recaptured: bool = False
    adopted: bool = False


class Session(Held):
    """``model`` held for analysis (see ``Held``), running gated passes over its captured graph."""

    def instrumented(self, plan: Instrument, inp: Inputs, listener: Listener,
                     anchor: Tensor) -> tuple[Any, list[Mismatch]]:
        """One pass of the model on ``inp`` with ``plan``'s gates, reporting to ``listener``
        (``anchor``: the scalar that keeps every gate in the autograd graph): its output, and
        where it left the captured graph (empty: it followed it and every join was gated)."""
        mismatches: list[Mismatch] = []
        out, recorder = forward(self.model, self.tree, inp, watcher=plan.watcher(listener),
                                rewrite=lambda rec: plan.rewrites(rec, listener, anchor, mismatches))
        plan.check(recorder, mismatches)
        return out, mismatches

    def follow(self, inp: Inputs, plan: P, attempt: Callable[[P], R | None],
               replan: Callable[[Graph, list[Block]], P], *, grad: bool,
               rerouted: bool = False) -> Followed[P, R]:
        """The gated forward: ``attempt(plan)``, a pass that gives None when the model left
        ``plan``'s graph. Then the model is captured again on ``inp``, under the session's
        autocast and with autograd on when ``grad`` (some models record other ops so, e.g. a
        ``.contiguous()`` that is a no-op without autograd), and ``replan`` makes a plan of the
        new graph and its blocks. With the same residual blocks (by name) that plan is adopted
        and attempted; with others (control flow that changed), attempted only when
        ``rerouted`` (the caller then matches blocks by name)."""
        got = attempt(plan)
        if got is not None:
            return Followed(plan, got)
        graph = self.recapture(inp, grad=grad)
        again = replan(graph, find_blocks(graph))
        same = _names(again) == _names(plan)
        if not same and not rerouted:
            return Followed(plan, None, recaptured=True)
        return Followed(again, attempt(again), recaptured=True, adopted=same)

    def recapture(self, inp: Inputs, *, grad: bool) -> Graph:
        """The model's graph on ``inp`` captured again (nested in this session's hold), with
        autograd on when ``grad``, under the session's autocast."""
        with self.autocast(inp):
            return record(self.model, inp, grad=grad, train=self.train)


def _names(plan: Planned) -> list[str]:
    return [b.name for b in plan.blocks]
