"""verify_blocks: replay the forward pass and check every block on real values."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .blocks import Block
from .capture import record
from .errors import VerificationError
from .graph import Graph
from .load import Loaded, as_loaded

__all__ = ["BlockCheck", "verify_blocks"]


@dataclass(frozen=True)
class BlockCheck:
    """The outcome of checking one block: the join read exactly the tensors the graph says it
    read (the skip and branch operands as they were produced) and its output is their sum."""

    name: str
    ok: bool
    error: float
    detail: str = ""


class _Checker:
    def __init__(self, graph: Graph, blocks: list[Block]):
        self.graph = graph
        self.joins = {b.join: b for b in blocks}
        self.pending: Counter[int] = Counter()
        for b in blocks:
            self.pending[b.skip_operand] += 1
            self.pending[b.branch_operand] += 1
        self.saved: dict[int, Tensor] = {}
        self.checks: dict[str, BlockCheck] = {}
        self.operands: dict[int, tuple[Tensor, Tensor]] = {}

    def before(self, next_id: int, op: str, tensors: list[Tensor],
               producers: list[int | None]) -> None:
        block = self.joins.get(next_id)
        if block is None or op != block.join_op or block.name in self.checks:
            return
        seen = dict(zip(producers, tensors))
        s, b = seen.get(block.skip_operand), seen.get(block.branch_operand)
        if s is None or b is None:
            self._fail(block, "the join did not read the skip and branch operands of the graph")
            return
        s0, b0 = self.saved[block.skip_operand], self.saved[block.branch_operand]
        err = max(_diff(s, s0), _diff(b, b0))
        if err > 0:
            self._fail(block, "an operand changed after it was produced (an untracked in-place op)",
                       err)
            return
        self.operands[block.join] = (s0, b0)

    def after(self, node_id: int, output: Tensor) -> None:
        if node_id in self.operands:
            block = self.joins[node_id]
            s0, b0 = self.operands.pop(node_id)
            self._release(block)
            if block.skip_kind == "concat" or any(c != 1.0 for c in self.graph[node_id].consts):
                self.checks[block.name] = BlockCheck(block.name, True, 0.0)
            else:
                err = _diff(output, s0 + b0)
                ok = err <= _tolerance(output, s0 + b0)
                self.checks[block.name] = BlockCheck(
                    block.name, ok, err, "" if ok else "join output != skip + branch")
        if self.pending.get(node_id):
            self.saved[node_id] = output.detach().clone()

    def _release(self, block: Block) -> None:
        for i in (block.skip_operand, block.branch_operand):
            self.pending[i] -= 1
            if self.pending[i] <= 0:
                self.saved.pop(i, None)

    def _fail(self, block: Block, why: str, err: float = float("inf")) -> None:
        self.checks[block.name] = BlockCheck(block.name, False, err, why)


def _diff(a: Tensor, b: Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a.detach().double() - b.double()).abs().max()) if a.numel() else 0.0


def _tolerance(out: Tensor, ref: Tensor) -> float:
    eps = torch.finfo(out.dtype).eps if out.dtype.is_floating_point else 0.0
    return 8 * eps * max(1.0, float(ref.detach().double().abs().max()) if ref.numel() else 1.0)


def _replay(loaded: Loaded, graph: Graph, blocks: list[Block], train: bool) -> _Checker:
    """Replay the pass with a checker watching every join. A first pass that filled a cache
    (an index table built once, an ``lru_cache``) records ops the later ones skip: then the
    replay's own graph is checked instead, when it holds the same blocks."""
    from .blocks import find_blocks

    checker = _Checker(graph, blocks)
    with torch.no_grad():
        replay = record(loaded.model, loaded.inputs, watcher=checker, train=train)
    if [n.op for n in replay.nodes] == [n.op for n in graph.nodes]:
        return checker
    again = find_blocks(replay)
    if [b.name for b in again] == [b.name for b in blocks]:
        checker = _Checker(replay, again)
        with torch.no_grad():
            second = record(loaded.model, loaded.inputs, watcher=checker, train=train)
        if [n.op for n in second.nodes] == [n.op for n in replay.nodes]:
            return checker
    raise VerificationError(
        "the replayed forward pass took a different path than the captured one; capture and "
        "verify with the same inputs, and make the model deterministic (eval mode, fixed seed)")


def verify_blocks(model: nn.Module | Loaded, inputs: Any, graph: Graph, blocks: list[Block],
                  *, strict: bool = True, train: bool = False) -> list[BlockCheck]:
    """Replay ``model`` on ``inputs`` and check each block numerically.

    Raises ``VerificationError`` if the replay takes another path than ``graph`` (control flow
    that depends on something other than the inputs), or, with ``strict``, if a block fails.
    Meta-device graphs have no values: the result is an empty list. ``train`` replays in
    train mode (for a graph captured that way).
    """
    if graph.device == "meta" or not blocks:
        return []
    loaded = as_loaded(model, inputs, what="verify")
    checker = _replay(loaded, graph, blocks, train)
    checks = [checker.checks.get(b.name) or BlockCheck(b.name, False, float("inf"), "join not seen")
              for b in blocks]
    bad = [c for c in checks if not c.ok]
    if strict and bad:
        raise VerificationError(
            f"{len(bad)} block(s) failed the numerical check, first {bad[0].name!r}: {bad[0].detail}")
    return checks
