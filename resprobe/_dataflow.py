"""Data-flow facts about a Graph that block detection needs, computed once in execution order."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator

from ._opclass import ADD, CAT, CONTRACTION, IDENTITY, SCALE, op_kind
from .graph import Graph

__all__ = ["Dataflow"]

_MAX_CHAIN = 32  # view-like ops followed upward from a join operand
_MAX_PROJECTION = 4  # ops a projection shortcut may hold (pool, conv, norm, ...), views aside
_MAX_REGION = 48  # nodes a projection shortcut may hold, views included


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
        self.weighted = [False] * n  # uses a weight, directly or through a static transform
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
            self.weighted[node.id] = weighted
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

    def free(self, i: int) -> bool:
        """A view-like op, one output of a split, or a concatenation: moves or regroups values
        without computing new ones (costs nothing in a projection shortcut's budget)."""
        return self.kind[i] in (IDENTITY, CAT) or self.graph.nodes[i].output_index is not None

    def projection_forks(self, start: int) -> Iterator[tuple[int, set[int]]]:
        """Candidate forks ``F`` of a projection shortcut ending at ``start``, nearest first, each
        with the shortcut's nodes (``start`` included): ``start`` is computed from ``F`` alone
        through at most a few ops that each read one tensor (pool, conv, norm), plus any number of
        views, split parts and their concatenation (MViT's ``cat(cls, maxpool(rest))``)."""
        region = {start}
        cost = 0
        pending = set(self.inputs[start])
        top = start
        while True:
            if not self.free(top):
                cost += 1
                if cost > _MAX_PROJECTION or self.unary(top) is None:
                    return
            if len(pending) == 1:
                yield next(iter(pending)), set(region)
            if not pending or len(region) >= _MAX_REGION:
                return
            top = max(pending)
            pending.discard(top)
            region.add(top)
            pending.update(j for j in self.inputs[top] if j not in region)

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
            if all(j in pure for j in ins) or (self.kind[i] == CAT and any(j in pure for j in ins)) \
                    or self.modulates(i, pure, fork) or self.attends(i, pure, fork):
                if self.parametric[i]:
                    return True
                pure.add(i)
                for c in self.consumers[i]:
                    heapq.heappush(heap, c)
        return False

    def size(self, i: int) -> int | None:
        """Element count of node ``i``'s output (None where its shape was not recorded)."""
        shape = self.graph.nodes[i].shape
        return None if shape is None else math.prod(shape)

    def broadcast(self, i: int, into: int) -> bool:
        """Whether node ``i``'s output is smaller than node ``into``'s (broadcast into it)."""
        a, b = self.size(i), self.size(into)
        return a is not None and b is not None and a < b

    def modulates(self, i: int, pure: set[int], fork: int | None = None) -> bool:
        """Node ``i`` is elementwise arithmetic of a value from ``pure`` (full-sized) with side
        inputs: broadcast over it (adaLN's ``norm(x)·(1 + scale) + shift``, a time embedding
        added per channel) or, for an add, not computed from ``fork`` (SAM's ``queries +
        query_pe``, DETR's ``src + pos``: an embedding re-added at each layer). The value keeps
        flowing; the side input only conditions it. An attention mask never carries its own
        value this way: it is broadcast into the scores, or meets them in a product."""
        if self.kind[i] not in (ADD, SCALE):
            return False
        shape = self.graph.nodes[i].shape
        ins = self.inputs[i]
        if shape is None or not any(j in pure and self.graph.nodes[j].shape == shape for j in ins):
            return False
        side = fork if self.kind[i] == ADD else None
        return all(j in pure or self.broadcast(j, i) or (side is not None and self.independent(side, j))
                   for j in ins)

    def attends(self, i: int, pure: set[int], fork: int) -> bool:
        """Node ``i`` is a weighted op whose main (first) input comes from ``pure`` and whose
        other inputs are side inputs not computed from ``fork``: a fused cross-attention
        ``mha(x, memory, memory)`` in a post-norm decoder layer, where nothing weighted reads
        ``x`` alone. (A mask reaches a weighted op only as a side input, never as its first.)"""
        ins = self.inputs[i]
        return self.weighted[i] and bool(ins) and ins[0] in pure and all(
            j in pure or self.independent(fork, j) for j in ins[1:])

    def independent(self, fork: int, j: int) -> bool:
        """Whether node ``j`` is not computed from ``fork`` (fork is no ancestor of it)."""
        return bool(self.deps[fork] & ~self.deps[j]) or j < fork or self.between(fork, j) is None

    def heavy(self, nodes: Iterable[int]) -> int:
        """How many parametric (weighted or contracting) ops ``nodes`` hold."""
        return sum(1 for i in nodes if self.parametric[i])

    def next_in_trunk(self, start: int, targets: set[int], fork: int | None = None) -> int | None:
        """The first of ``targets`` that the residual stream reaches from ``start``, if any.

        Follows the stream past a join: through ops computed from it alone (post-norms,
        activations, views, transition convs), through a concatenation that carries it on in
        part of its channels or tokens (DPN's ``cat([resid, dense])``, RexNet's ``cat([x[:, :c]
        + x_in, x[:, c:]])``, a U-Net decoder's ``cat([h, skip])``), and through an add of a
        further branch of the same block input ``fork`` (a parallel block's ``x + attn(ln x) +
        mlp(ln x)``) or of a side input broadcast over it.
        """
        if start in targets:
            return start
        trunk = {start}
        heap = list(self.consumers[start])
        heapq.heapify(heap)
        while heap:
            i = heapq.heappop(heap)
            if i in trunk or not self._carries(i, trunk, fork):
                continue
            if i in targets:
                return i
            trunk.add(i)
            for c in self.consumers[i]:
                heapq.heappush(heap, c)
        return None

    def _carries(self, i: int, trunk: set[int], fork: int | None) -> bool:
        """Whether node ``i`` carries the stream (``trunk``) on."""
        ins = self.inputs[i]
        if all(j in trunk for j in ins):
            return True
        if self.kind[i] == CAT:
            return any(j in trunk for j in ins)
        if self.modulates(i, trunk):
            return True
        if self.kind[i] != ADD:
            return False
        shape = self.graph.nodes[i].shape
        return any(j in trunk and self.graph.nodes[j].shape == shape for j in ins) and all(
            j in trunk or (fork is not None and self.between(fork, j) is not None) for j in ins)
