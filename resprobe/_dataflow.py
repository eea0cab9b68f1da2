"""Data-flow facts about a Graph that block detection needs, computed once in execution order."""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from ._opclass import CAT, CONTRACTION, IDENTITY, SCALE, op_kind
from .graph import Graph

__all__ = ["Dataflow"]

_MAX_CHAIN = 32  # view-like ops followed upward from a join operand
_MAX_PROJECTION = 4  # ops a projection shortcut may hold (pool, conv, norm, ...)


class Dataflow:
    """Per-node facts: which nodes carry data (vs. constants), which are parametric, who reads whom.

    A node carries *data* when it depends on a model input; nodes built only from parameters,
    buffers and tensors created inside forward (biases, position tables, rotary cos/sin, masks
    built from shapes) are *static* and can never be a residual operand.
    """

    def __init__(self, graph: Graph):
        self.graph = graph
        n = len(graph.nodes)
        self.kind = [op_kind(node.op) for node in graph.nodes]
        self.data = [False] * n
        self.param_static = [False] * n  # static and built from a parameter (a transformed weight)
        self.parametric = [False] * n
        self.deps = [0] * n  # bitmask of the model inputs a node depends on
        self.weight = [0] * n  # parameter elements a node uses, directly or through static inputs
        self.inputs: list[tuple[int, ...]] = [()] * n
        self.consumers: list[list[int]] = [[] for _ in range(n)]
        for bit, node in enumerate(node for node in graph.nodes if node.is_input):
            self.deps[node.id] = 1 << bit
            self.data[node.id] = True
        for node in graph.nodes:
            if node.is_input:
                continue
            data_in = tuple(i for i in node.inputs if self.data[i])
            self.weight[node.id] = sum(graph.param_sizes.get(p, 0) for p in node.params) + sum(
                self.weight[i] for i in dict.fromkeys(node.inputs) if not self.data[i])
            self.inputs[node.id] = data_in
            for i in dict.fromkeys(data_in):
                self.consumers[i].append(node.id)
                self.deps[node.id] |= self.deps[i]
            self.data[node.id] = bool(data_in)
            weighted = bool(node.params) or any(self.param_static[i] for i in node.inputs)
            self.param_static[node.id] = weighted and not data_in
            self.parametric[node.id] = bool(data_in) and (
                weighted or self.kind[node.id] == CONTRACTION)

    def unary(self, i: int) -> int | None:
        """The single data input of node ``i`` (read once or several times), else None."""
        ins = self.inputs[i]
        return ins[0] if ins and all(j == ins[0] for j in ins) else None

    def is_scale(self, i: int) -> bool:
        """A multiply/divide of one data tensor by numbers, weights or static tensors."""
        return self.kind[i] == SCALE and self.unary(i) is not None

    def view_chain(self, start: int) -> list[int]:
        """``start`` and the nodes above it reached through view-like ops and scales."""
        chain = [start]
        cur = start
        while len(chain) < _MAX_CHAIN:
            up = self.unary(cur)
            if up is None or not (self.kind[cur] == IDENTITY or self.is_scale(cur)):
                break
            chain.append(up)
            cur = up
        return chain

    def projection_chain(self, start: int) -> list[int]:
        """Up to a few single-input ops above ``start`` (a candidate projection shortcut)."""
        chain: list[int] = []
        cur = start
        while len(chain) < _MAX_PROJECTION:
            up = self.unary(cur)
            if up is None:
                break
            chain.append(up)
            cur = up
        return chain

    def between(self, fork: int, end: int) -> set[int] | None:
        """Nodes on data paths from ``fork`` to ``end`` (``end`` included, ``fork`` not).

        None when ``fork`` is not an ancestor of ``end``. Only nodes executed between the two
        are visited, so the cost is the size of the block, not of the graph.
        """
        if fork >= end or self.deps[fork] & ~self.deps[end]:
            return None
        above = {end}
        stack = [end]
        found = False
        while stack:
            for i in self.inputs[stack.pop()]:
                if i == fork:
                    found = True
                elif i > fork and i not in above:
                    above.add(i)
                    stack.append(i)
        if not found:
            return None
        inside: set[int] = set()
        stack = [fork]
        while stack:
            for c in self.consumers[stack.pop()]:
                if c in above and c not in inside:
                    inside.add(c)
                    stack.append(c)
        return inside

    def feeds_weights(self, fork: int, end: int, within: set[int] | None = None) -> bool:
        """Whether a parametric op computed from ``fork`` alone (plus constants) runs by ``end``.

        A residual stream enters its branch this way (``norm(x)``, ``conv(x)``, also through a
        concatenation with other data: ``norm(cat(x_cls, x))``); a side input such as an
        attention mask only ever meets other data by arithmetic (``scores + mask``), so it can
        be an ancestor of a later branch without being a fork. ``within`` limits the search.
        """
        pure = {fork}
        heap = list(self.consumers[fork])
        heapq.heapify(heap)
        while heap:
            i = heapq.heappop(heap)
            if i > end or i in pure or (within is not None and i not in within):
                continue
            ins = self.inputs[i]
            if all(j in pure for j in ins) or (self.kind[i] == CAT and any(j in pure for j in ins)):
                if self.parametric[i]:
                    return True
                pure.add(i)
                for c in self.consumers[i]:
                    heapq.heappush(heap, c)
        return False

    def heavy(self, nodes: Iterable[int]) -> int:
        """How many parametric (weighted or contracting) ops ``nodes`` hold."""
        return sum(1 for i in nodes if self.parametric[i])

    def next_in_trunk(self, start: int, targets: set[int]) -> int | None:
        """The first of ``targets`` computed from ``start`` alone (plus constants), if any.

        Follows the residual stream past a join: through post-norms, activations and views,
        to the fork of the next block.
        """
        if start in targets:
            return start
        trunk = {start}
        heap = list(self.consumers[start])
        heapq.heapify(heap)
        while heap:
            i = heapq.heappop(heap)
            if i in trunk or not all(j in trunk for j in self.inputs[i]):
                continue
            if i in targets:
                return i
            trunk.add(i)
            for c in self.consumers[i]:
                heapq.heappush(heap, c)
        return None
