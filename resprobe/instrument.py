"""Gates at the detected joins: one recorded pass where each ``y = s + b`` becomes
``gate(s) + gate(b)``, and each block's input is gated where the skip and the branch read it.

A gate is an identity ``autograd.Function``; its backward hands the incoming gradient to a
listener and multiplies it by a scale read at backward time (default 1). The branch can also
be scaled in the forward pass (0 deletes the block). Nothing is installed on the model: the
gates live in the recorder's rewrite table for one pass, and in-place joins (``out += x``)
are computed out of place inside that pass only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from ._recorder import Recorder, Rewrite, Watcher, _op_names
from .blocks import Block
from .graph import Graph

__all__ = ["Gate", "Instrument", "Listener", "Mismatch"]

SKIP, BRANCH = "skip", "branch"


class Listener(Protocol):
    """What an instrumented pass reports; every tensor stays on the model's device."""

    def joined(self, i: int, s: Tensor, b: Tensor, y: Tensor, plain: bool = False) -> None:
        """Forward: block ``i`` joined skip ``s`` and branch ``b`` into ``y`` (``plain``:
        ``y = s + b`` exactly, no scale anywhere)."""

    def delta(self, i: int, grad: Tensor, b: Tensor | None) -> None:
        """Backward: the gradient reaching block ``i``'s join output (with its branch output,
        None when the plan does not keep branch outputs: ``Instrument.keep_branches``)."""

    def entered(self, i: int, role: str, grad: Tensor) -> None:
        """Backward: gradient reaching block ``i``'s input through its skip or its branch."""

    def node(self, node_id: int, out: Tensor) -> None:
        """Forward: the output of a node asked for in ``Instrument(watch=...)``."""


class Gate(torch.autograd.Function):
    """Identity in the forward pass; the backward calls ``tap(grad)`` and passes on what it
    returns. ``anchor`` (a scalar that requires grad) keeps the gate in the autograd graph even
    when nothing before it requires grad."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, anchor: Tensor, tap: Callable[[Tensor], Tensor],
                copy: bool = False) -> Tensor:
        ctx.tap = tap
        return x.clone() if copy else x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        return ctx.tap(grad), None, None, None


@dataclass
class Mismatch:
    """Where an instrumented pass left the captured graph (control flow that changed)."""

    node: int
    expected: str
    got: str


@dataclass
class _Site:
    block: Block
    index: int
    # consumers of other blocks' inputs this join also is: (fork, role, block index)
    roles: list[tuple[int, str, int]] = field(default_factory=list)


class Instrument:
    """The plan for gating ``blocks`` of ``graph`` (residual blocks only; concat skips are
    not refinement steps). ``watch`` names nodes whose outputs the listener receives.

    ``copy=True`` makes every gate output (and the join output handed on to the model) a copy
    rather than a view, so that each stays a stable point of the autograd graph that later
    in-place ops cannot touch (for gradients taken between them, as the exact path-length
    profile does); a listener with a ``gated(i, role, tensor)`` method then receives the gate
    outputs (roles ``skip``/``branch`` at the block input, ``join-skip``/``join-branch`` at the
    join).

    ``keep_branches=False`` lets each branch output go after the forward pass (the listener's
    ``delta`` then gets None instead): less memory, no statistics that need ``b`` and a gradient.

    Scales (read when used, so they can change between passes): ``branch_forward[i]`` multiplies
    block i's branch before the join (a float, or a tensor broadcast against the branch from
    the left, e.g. one value per sample); ``skip_backward[i]`` / ``branch_backward[i]`` multiply
    the gradient leaving the join through the skip / the branch.
    """

    def __init__(self, graph: Graph, blocks: list[Block], watch: tuple[int, ...] = (), copy: bool = False):
        self.graph = graph
        self.copy = copy
        self.blocks = [b for b in blocks if b.is_residual]
        self.watch = frozenset(watch)
        self.sites = {b.join: _Site(b, i) for i, b in enumerate(self.blocks)}
        self.consumers: dict[int, list[tuple[int, str, int]]] = {}
        readers: dict[int, list[int]] = {b.fork: [] for b in self.blocks}
        for node in graph.nodes:
            if node.output_index:  # a further output of a multi-output op, read by its first node
                continue
            for i in dict.fromkeys(node.inputs):
                if i in readers:
                    readers[i].append(node.id)
        for i, b in enumerate(self.blocks):
            skip, branch = set(b.skip) | {b.join}, set(b.branch)
            for c in readers[b.fork]:
                role = BRANCH if c in branch else SKIP if c in skip else None
                if role is None:
                    continue
                if c in self.sites:
                    self.sites[c].roles.append((b.fork, role, i))
                else:
                    self.consumers.setdefault(c, []).append((b.fork, role, i))
        self.last: _PassRewrites | None = None
        self.branch_forward: dict[int, float | Tensor] = {}
        self.skip_backward: dict[int, float | Tensor] = {}
        self.branch_backward: dict[int, float | Tensor] = {}
        self.keep_branches = True  # hold each branch output for the backward pass (b·δ statistics)

    def rewrites(self, recorder: Recorder, listener: Listener, anchor: Tensor,
                 mismatches: list[Mismatch]) -> dict[int, Rewrite]:
        """The recorder's rewrite table for one pass."""
        pass_ = _PassRewrites(self, recorder, listener, anchor, mismatches)
        self.last = pass_
        table: dict[int, Rewrite] = {}
        for nid, site in self.sites.items():
            table[nid] = pass_.join(nid, site)
        for nid, roles in self.consumers.items():
            table[nid] = pass_.consumer(nid, roles)
        return table

    def check(self, recorder: Recorder, mismatches: list[Mismatch]) -> bool:
        """After a pass: whether it followed the graph and every join was gated."""
        if mismatches:
            return False
        ops = recorder.ops()
        if ops != [n.op for n in self.graph.nodes]:
            at = next((k for k, (a, b) in enumerate(zip(ops, self.graph.nodes)) if a != b.op),
                      min(len(ops), len(self.graph.nodes)))
            expected = self.graph.nodes[at].op if at < len(self.graph.nodes) else "the end"
            mismatches.append(Mismatch(at, expected, ops[at] if at < len(ops) else "the end"))
            return False
        applied = self.last.applied if self.last is not None else set()
        if self.last is not None:  # a reader of a block input left ungated: its split is incomplete
            for nid, roles in self.consumers.items():
                if nid not in applied:
                    self.last.ungated.update(j for _, _, j in roles)
        missed = [nid for nid in self.sites if nid not in applied]
        for nid in missed:
            mismatches.append(Mismatch(nid, "a join of the graph's skip and branch", "other operands"))
        return not missed

    def ungated(self) -> set[int]:
        """Blocks of the last pass whose input was read without a gate (written in place by a
        reader, or read where the graph did not expect it): their skip/branch split is incomplete."""
        return set(self.last.ungated) if self.last is not None else set()

    def watcher(self, listener: Listener) -> Watcher | None:
        """A recorder watcher that hands the watched nodes' outputs to ``listener``."""
        return _Watch(self.watch, listener) if self.watch else None


class _Watch:
    def __init__(self, watch: frozenset[int], listener: Listener):
        self.watch = watch
        self.listener = listener

    def before(self, next_id: int, op: str, tensors: list[Tensor], producers: list[int | None]) -> None:
        pass

    def after(self, node_id: int, output: Tensor) -> None:
        if node_id in self.watch:
            self.listener.node(node_id, output)


_INPLACE_JOINS = frozenset({"Tensor.add_", "Tensor.__iadd__"})
_PLAIN_ADDS = frozenset({"Tensor.add_", "Tensor.__iadd__", "Tensor.__add__", "Tensor.__radd__", "Tensor.add",
                         "torch.add"})


class _PassRewrites:
    """The rewrites of one instrumented pass (they share its listener and anchor)."""

    def __init__(self, plan: Instrument, recorder: Recorder, listener: Listener, anchor: Tensor,
                 mismatches: list[Mismatch]):
        self.plan = plan
        self.recorder = recorder
        self.listener = listener
        self.anchor = anchor
        self.mismatches = mismatches
        self.applied: set[int] = set()
        self.ungated: set[int] = set()  # blocks whose input is written in place by a reader of it
        self.handles: Callable[[int, str, Tensor], None] | None = getattr(listener, "gated", None)
        self.armed: Callable[[list[tuple[str, int]]], None] | None = getattr(listener, "armed", None)
        self.sinks: dict[int, list[tuple[str, int]]] = {}  # id(tap) -> the (role, block) it reports
        self.roles: list[tuple[int, str, int]] = []

    def _expected(self, nid: int, func: Any) -> bool:
        """Whether ``func`` is the op the graph has at ``nid`` (an op that returns its input,
        such as ``x.contiguous()``, makes no node and may come first with the same id)."""
        return bool(_op_names(func)[0] == self.plan.graph.nodes[nid].op)

    def _tap(self, sinks: list[tuple[str, int]], scale: Callable[[], float | Tensor | None] | None = None,
             delta: tuple[int, Tensor | None] | None = None) -> Callable[[Tensor], Tensor]:
        listener = self.listener

        def tap(grad: Tensor) -> Tensor:
            if delta is not None:
                listener.delta(delta[0], grad, delta[1])
            for role, i in sinks:
                listener.entered(i, role, grad)
            k = scale() if scale is not None else None
            return grad if k is None else grad * k

        self.sinks[id(tap)] = sinks
        return tap

    def _gate(self, x: Tensor, tap: Callable[[Tensor], Tensor]) -> Tensor:
        """``Gate.apply`` on ``x``; a listener with ``armed(sinks)`` hears of every gate made,
        with the (role, block) pairs its backward will report (to know when a block's
        gradients are all in)."""
        if self.armed is not None:
            self.armed(self.sinks.get(id(tap), []))
        out: Tensor = Gate.apply(x, self.anchor, tap, self.plan.copy)
        return out

    def join(self, nid: int, site: _Site) -> Rewrite:
        b, i = site.block, site.index
        plan = self.plan

        def rewrite(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if not self._expected(nid, func):
                return func, args, kwargs
            pos = {self.recorder.producer(a): k for k, a in enumerate(args) if isinstance(a, Tensor)}
            sp, bp = pos.get(b.skip_operand), pos.get(b.branch_operand)
            if sp is None or bp is None or not args[sp].is_floating_point():
                return func, args, kwargs
            self.applied.add(nid)
            s, br = args[sp], args[bp]
            roles = [(role, j) for fork, role, j in site.roles if self.recorder.producer(s) == fork]
            sinks_b = [(role, j) for fork, role, j in site.roles if self.recorder.producer(br) == fork]
            skip_tap = self._tap(roles, lambda: plan.skip_backward.get(i))
            keep = None if not plan.keep_branches else br.detach().clone() \
                if (sp == 0 or bp == 0) and _op_names(func)[0] == "Tensor.add_" else br.detach()
            branch_tap = self._tap(sinks_b, lambda: plan.branch_backward.get(i), (i, keep))
            name = _op_names(func)[0]
            plain = name in _PLAIN_ADDS and not kwargs and len(args) == 2

            def joined(*a: Any, **k: Any) -> Any:
                scale = plan.branch_forward.get(i)
                written = name == "Tensor.add_" and bp == 0  # the branch is written in place below
                bb = br if scale is None else (br.clone() if written else br) * _left(scale, br)
                gated = list(args)
                gated[sp] = self._gate(s, skip_tap)
                gated[bp] = self._gate(bb, branch_tap)
                y = torch.add(*gated[:2], **kwargs) if name in _INPLACE_JOINS else func(*gated, **kwargs)
                if self.handles is not None:
                    self.handles(i, "join-skip", gated[sp])
                    self.handles(i, "join-branch", gated[bp])
                    for role, j in roles:
                        self.handles(j, role, gated[sp])
                    for role, j in sinks_b:
                        self.handles(j, role, gated[bp])
                # s is overwritten below when it is the tensor add_ writes into: keep its value
                kept = s.detach().clone() if name == "Tensor.add_" and sp == 0 else s
                self.listener.joined(i, kept, br, y, plain and scale is None)
                if name == "Tensor.add_":  # written in place by the model: keep it so
                    args[0].copy_(y)
                    return args[0]
                return y.clone() if plan.copy else y  # a copy: the model may write into what it gets

            return joined, args, kwargs

        return rewrite

    def consumer(self, nid: int, roles: list[tuple[int, str, int]]) -> Rewrite:
        def rewrite(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if not self._expected(nid, func):
                return func, args, kwargs
            taps: dict[int, Callable[[Tensor], Tensor]] = {}
            for fork in dict.fromkeys(f for f, _, _ in roles):
                taps[fork] = self._tap([(role, j) for f, role, j in roles if f == fork])
            self.roles = roles
            if _op_names(func)[0].endswith("_") and args:  # in place: the written tensor cannot be gated
                written = self.recorder.producer(args[0]) if isinstance(args[0], Tensor) else None
                self.ungated.update(j for f, _, j in roles if f == written)
                gated_args = (args[0], *self._gated(args[1:], taps))
            else:
                gated_args = self._gated(args, taps)
            gated_kwargs = {k: self._gated_one(v, taps) for k, v in kwargs.items()}
            if any(a is not b for a, b in zip(gated_args, args)) or any(
                    gated_kwargs[k] is not v for k, v in kwargs.items()):
                self.applied.add(nid)
            return func, gated_args, gated_kwargs

        return rewrite

    def _gated(self, args: tuple[Any, ...], taps: dict[int, Callable[[Tensor], Tensor]]) -> tuple[Any, ...]:
        return tuple(self._gated_one(a, taps) for a in args)

    def _gated_one(self, a: Any, taps: dict[int, Callable[[Tensor], Tensor]]) -> Any:
        if isinstance(a, Tensor):
            fork = self.recorder.producer(a)
            tap = taps.get(fork)  # type: ignore[arg-type]
            if tap is None or not a.is_floating_point():
                return a
            out = self._gate(a, tap)
            if self.handles is not None:
                for f, role, j in self.roles:
                    if f == fork:
                        self.handles(j, role, out)
            return out
        if type(a) is list or type(a) is tuple:
            return type(a)(self._gated_one(v, taps) for v in a)
        return a


def _left(scale: float | Tensor, like: Tensor) -> float | Tensor:
    """``scale`` shaped to broadcast against ``like`` from the left (one value per sample)."""
    if isinstance(scale, Tensor):
        if scale.dim() and scale.dim() < like.dim():
            scale = scale.reshape(*scale.shape, *([1] * (like.dim() - scale.dim())))
        return scale.to(like.dtype)
    return scale
