"""Block, Stream and find_blocks(graph): residual joins found structurally from data flow."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._dataflow import Dataflow
from ._naming import block_name
from ._opclass import ADD, CAT, IDENTITY, SCALE
from .graph import Graph

__all__ = ["Block", "Stream", "by_stream", "find_blocks", "streams"]


@dataclass(frozen=True)
class Block:
    """One residual join ``y = skip + branch`` (or a concat skip), found from data flow.

    ``fork`` is the node whose output both paths start from; ``skip`` holds the nodes on the
    skip path (empty for a plain identity skip; a 1x1 conv + norm for a projection), ``branch``
    the nodes on the branch path, both in execution order. ``stream``/``step`` place the block
    along its residual stream (None for concat skips, which are not refinement steps).
    """

    name: str
    join: int
    fork: int
    skip_operand: int
    branch_operand: int
    skip: tuple[int, ...]
    branch: tuple[int, ...]
    skip_kind: str  # "identity" | "projection" | "concat"
    join_kind: str  # "add" | "scaled" | "gated" | "concat"
    join_op: str
    module: str
    branch_modules: tuple[str, ...]
    stream: int | None = None
    step: int | None = None

    @property
    def is_residual(self) -> bool:
        return self.skip_kind != "concat"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "stream": self.stream, "step": self.step, "skip": self.skip_kind,
            "join": self.join_kind, "join_op": self.join_op, "module": self.module,
            "branch_modules": list(self.branch_modules), "fork_node": self.fork,
            "join_node": self.join, "skip_nodes": list(self.skip), "branch_nodes": list(self.branch),
        }


@dataclass(frozen=True)
class Stream:
    """An ordered chain of residual blocks: each join's output feeds the next block's skip."""

    id: int
    blocks: tuple[str, ...]


@dataclass(frozen=True)
class _Found:
    join: int
    fork: int
    skip_operand: int
    branch_operand: int
    skip: tuple[int, ...]
    branch: tuple[int, ...]
    skip_kind: str


def find_blocks(graph: Graph) -> list[Block]:
    """Every residual join and concat skip of ``graph``, in execution order of their joins.

    Torch-free and name-free: only the data flow of the recorded ops is used. A join is an
    add whose two operands both carry data, where one operand reaches back (through view-like
    ops, or through a short shape-changing projection) to a fork from which the other operand
    is computed by a path holding parametric ops.
    """
    flow = Dataflow(graph)
    found: list[_Found] = []
    for node in graph.nodes:
        kind = flow.kind[node.id]
        if kind == ADD and len(set(flow.inputs[node.id])) == 2:
            hit = _residual(flow, node.id)
        elif kind == CAT and len(set(flow.inputs[node.id])) >= 2:
            hit = _concat(flow, node.id)
        else:
            continue
        if hit is not None:
            found.append(hit)
    order = _stream_order(flow, [f for f in found if f.skip_kind != "concat"])
    names = _unique([block_name(graph, flow, f.join, f.branch, f.branch_operand) for f in found])
    return [_block(graph, flow, f, name, order.get(f.join)) for f, name in zip(found, names)]


def streams(blocks: list[Block]) -> list[Stream]:
    """The residual streams that ``blocks`` lie on, each with its blocks in step order."""
    return [Stream(sid, tuple(b.name for b in bs)) for sid, bs in by_stream(blocks).items()]


def by_stream(blocks: Iterable[Block]) -> dict[int, list[Block]]:
    """The blocks of each residual stream, by stream id in increasing order, each stream's
    blocks in step order (concat skips lie on no stream and are left out). The one place
    blocks are grouped by stream: the report, the measurement plan and the depth profiles
    read their streams from here."""
    grouped: dict[int, list[Block]] = {}
    for b in blocks:
        if b.stream is not None:
            grouped.setdefault(b.stream, []).append(b)
    return {sid: sorted(bs, key=lambda b: b.step or 0) for sid, bs in sorted(grouped.items())}


def _residual(flow: Dataflow, join: int) -> _Found | None:
    a, b = flow.inputs[join][:2]
    sides = [(s, o) for s, o in ((a, b), (b, a))
             if not flow.broadcast(s, join) and _ends_branch(flow, o, join)]
    for skip_side, branch_side in sides:
        chain = flow.view_chain(skip_side)
        for k, fork in enumerate(chain):
            branch = _branch(flow, fork, branch_side, chain[:k])
            if branch is not None:
                return _Found(join, fork, skip_side, branch_side, tuple(sorted(chain[:k])),
                              tuple(sorted(branch)), "identity")
    for skip_side, branch_side in sides:
        hit = _projection(flow, join, skip_side, branch_side)
        if hit is not None:
            return hit
    return None


def _ends_branch(flow: Dataflow, operand: int, join: int) -> bool:
    """A branch's output is read by its join alone. One read elsewhere too is a state of the
    stream, not a branch: SAM's ``queries + query_pe`` re-adds the prompt embedding to
    ``queries``, which the layer reads on its own as well (its skip, its values)."""
    return all(c == join for c in flow.consumers[operand])


def _branch(flow: Dataflow, fork: int, end: int, skip: Iterable[int] = ()) -> set[int] | None:
    """The branch from ``fork`` to ``end`` if ``fork`` is where a weighted branch starts.

    Ops on the skip path (``skip``: between the fork and the skip operand) are shared by both
    sides, not part of the branch: a weighted norm that both halves of RoPE's ``q·cos +
    rotate_half(q)·sin`` read through is no branch of its own."""
    if not flow.feeds_weights(fork, end):
        return None
    branch = flow.between(fork, end)
    if branch is None:
        return None
    branch.difference_update(skip)
    if not flow.feeds_weights(fork, end, within=branch):
        return None
    return branch


def _projection(flow: Dataflow, join: int, skip_side: int, branch_side: int) -> _Found | None:
    """A short, shape-changing shortcut next to a strictly heavier branch (where shapes are
    unknown, as in a TorchScript graph, the shape change cannot be required). Views on the
    shortcut cost nothing: MViT's ``maxpool`` between a reshape and a permute is one op."""
    shapes = flow.graph.nodes
    for fork, skip in flow.projection_forks(skip_side):
        branch = _branch(flow, fork, branch_side, skip)
        if branch is None:
            continue
        before, after = shapes[fork].shape, shapes[skip_side].shape
        reshaped = before != after or before is None  # graphs read from files may lack shapes
        computes = any(not flow.free(i) for i in skip)  # a pool or a conv, not only views
        if computes and reshaped and _lighter(flow, skip, branch):
            return _Found(join, fork, skip_side, branch_side, tuple(sorted(skip)),
                          tuple(sorted(branch)), "projection")
        return None
    return None


def _lighter(flow: Dataflow, skip: set[int], branch: set[int]) -> bool:
    """A projection shortcut holds fewer weighted ops than the branch beside it, and fewer
    weights (where sizes are known): otherwise the two are parallel branches summed, as in
    ``attn_proj(attn(y)) + mlp_proj(gelu(y))``."""
    ws, wb = (sum(flow.weight[i] for i in nodes) for nodes in (skip, branch))
    return flow.heavy(branch) > flow.heavy(skip) and (ws == 0 or wb > ws)


def _concat(flow: Dataflow, join: int) -> _Found | None:
    """A concatenation of a tensor with something computed from it (DenseNet, U-Net)."""
    ins = list(dict.fromkeys(flow.inputs[join]))
    latest = max(ins)
    for s in sorted(ins):
        if s == latest:
            continue
        chain = flow.view_chain(s)
        for k, fork in enumerate(chain):
            branch = _branch(flow, fork, latest, chain[:k])
            if branch is not None:
                return _Found(join, fork, s, latest, tuple(sorted(chain[:k])),
                              tuple(sorted(branch)), "concat")
    return None


def _join_kind(flow: Dataflow, f: _Found) -> str:
    if f.skip_kind == "concat":
        return "concat"
    consts = flow.graph.nodes[f.join].consts
    scaled = any(c != 1.0 for c in consts) or (
        f.skip_kind == "identity" and any(flow.kind[i] == SCALE for i in f.skip))
    cur = f.branch_operand
    while True:
        if flow.kind[cur] == SCALE:
            if flow.unary(cur) is None:
                return "gated" if _is_gate(flow, cur, set(f.branch)) else ("scaled" if scaled else "add")
            scaled = True
        elif flow.kind[cur] != IDENTITY or flow.unary(cur) is None:
            break
        up = flow.unary(cur)
        if up is None or up == f.fork:
            break
        cur = up
    return "scaled" if scaled else "add"


def _is_gate(flow: Dataflow, mul: int, branch: set[int]) -> bool:
    """``g ⊙ f``: a gate from outside the branch, or from a sibling path (not ``x ⊙ s(x)``, as
    in squeeze-and-excitation, where one factor is computed from the other)."""
    p, q = flow.inputs[mul][:2]
    if p not in branch or q not in branch:
        return True
    return flow.between(p, q) is None and flow.between(q, p) is None


def _stream_order(flow: Dataflow, found: list[_Found]) -> dict[int, tuple[int, int]]:
    """Map join id -> (stream id, step) by following each join's output to the next fork."""
    by_fork: dict[int, _Found] = {}
    for f in found:  # blocks sharing a fork: the stream continues into the outermost one
        if f.fork not in by_fork or f.join > by_fork[f.fork].join:
            by_fork[f.fork] = f
    nxt: dict[int, int] = {}
    has_prev: set[int] = set()
    for f in found:
        fork = flow.next_in_trunk(f.join, set(by_fork) - {f.fork}, f.fork)
        if fork is not None and by_fork[fork].join not in has_prev:
            nxt[f.join] = by_fork[fork].join
            has_prev.add(by_fork[fork].join)
    order: dict[int, tuple[int, int]] = {}
    heads = [f.join for f in found if f.join not in has_prev]
    for sid, head in enumerate(heads):
        step, cur = 1, head
        while cur is not None and cur not in order:
            order[cur] = (sid, step)
            step += 1
            cur = nxt.get(cur)  # type: ignore[assignment]
    return order


def _unique(names: list[str]) -> list[str]:
    total = Counter(names)
    seen: Counter[str] = Counter()
    out = []
    for n in names:
        seen[n] += 1
        out.append(f"{n}#{seen[n]}" if total[n] > 1 else n)
    return out


def _block(graph: Graph, flow: Dataflow, f: _Found, name: str,
           place: tuple[int, int] | None) -> Block:
    seen = list(dict.fromkeys(graph.nodes[i].module for i in f.branch if graph.nodes[i].module))
    modules = tuple(m for m in seen if not any(o.startswith(m + ".") for o in seen))
    return Block(
        name=name, join=f.join, fork=f.fork, skip_operand=f.skip_operand,
        branch_operand=f.branch_operand, skip=f.skip, branch=f.branch, skip_kind=f.skip_kind,
        join_kind=_join_kind(flow, f), join_op=graph.nodes[f.join].op,
        module=graph.nodes[f.join].module, branch_modules=modules,
        stream=None if place is None else place[0], step=None if place is None else place[1],
    )
