"""Name a block by the module that computes its branch (its dotted path, e.g. ``h.3.mlp``)."""

from __future__ import annotations

from collections import defaultdict

from ._dataflow import Dataflow
from ._opclass import CAT, CONTRACTION, IDENTITY, SCALE
from .graph import Graph

__all__ = ["block_name"]


def _common(paths: list[str]) -> str:
    parts = [p.split(".") if p else [] for p in paths]
    prefix: list[str] = []
    for column in zip(*parts):
        if any(c != column[0] for c in column):
            break
        prefix.append(column[0])
    return ".".join(prefix)


def _child(path: str, parent: str) -> str | None:
    if path == parent:
        return None
    rest = path[len(parent) + 1:] if parent else path
    return rest.split(".", 1)[0]


def _core(flow: Dataflow, branch: tuple[int, ...], end: int) -> list[int]:
    """The branch without trailing views, dropouts and scales (LayerScale, ``γ·f(x)``)."""
    tail = set()
    cur: int | None = end
    while cur is not None and cur in branch and flow.kind[cur] in (IDENTITY, SCALE):
        tail.add(cur)
        ins = [i for i in flow.inputs[cur] if i in branch]  # a gate's other input is outside
        cur = ins[0] if len(set(ins)) == 1 else None
    core = [i for i in branch if i not in tail]
    return core or list(branch)


def block_name(graph: Graph, flow: Dataflow, join: int, branch: tuple[int, ...], end: int) -> str:
    """The innermost module holding the branch and the join; or, when one child module holds
    most of the branch's weights and all that runs outside it is a single weighted op before
    it that contracts nothing (a pre-norm), that child. A concat skip is named by the module
    that concatenates."""
    nodes = graph.nodes
    if flow.kind[join] == CAT:
        return nodes[join].module or nodes[join].name
    core = _core(flow, branch, end)
    owner = _common([nodes[i].module for i in core] + [nodes[join].module])
    groups: dict[str | None, list[int]] = defaultdict(list)
    for i in core:
        groups[_child(nodes[i].module, owner)].append(i)
    weights = {c: sum(flow.weight[i] for i in ids) for c, ids in groups.items() if c is not None}
    if weights:
        best = max(weights, key=lambda c: weights[c])
        start = min(groups[best])
        rest = [i for c, ids in groups.items() if c != best for i in ids]
        prenorm = all(i < start for i in rest) and flow.heavy(rest) <= 1 and not any(
            flow.kind[i] == CONTRACTION for i in rest)  # a norm, not a conv or a linear
        if weights[best] and 2 * weights[best] > sum(flow.weight[i] for i in core) and prenorm:
            return _common([nodes[i].module for i in groups[best]])
    return owner or nodes[join].module or nodes[join].name
