"""verify_blocks: the numerical check catches what the graph could not see."""

from __future__ import annotations

import pytest
import torch
import zoo
from torch import Tensor, nn

import resprobe
from resprobe import VerificationError, find_blocks, verify_blocks


class HiddenWrite(nn.Module):
    """Changes the skip tensor through ``.data``, which shares storage but not the version
    counter: the recorded graph cannot see it, the replay must."""

    def __init__(self) -> None:
        super().__init__()
        self.f = zoo.mlp()

    def forward(self, x: Tensor) -> Tensor:
        h = x * 1.0
        out = self.f(h)
        h.data.add_(1.0)
        return h + out


def test_untracked_write_fails_verification() -> None:
    model, x = HiddenWrite(), torch.randn(2, zoo.D)
    graph = resprobe.capture(model, x)
    found = find_blocks(graph)
    assert [b.name for b in found] == ["f"]
    checks = verify_blocks(model, x, graph, found, strict=False)
    assert not checks[0].ok and "changed after it was produced" in checks[0].detail
    with pytest.raises(VerificationError, match="1 block"):
        verify_blocks(model, x, graph, found)


def test_a_replay_on_another_path_is_refused() -> None:
    model = zoo.ControlFlow()
    x = torch.randn(2, zoo.D).abs() + 0.1
    graph = resprobe.capture(model, x)
    with pytest.raises(VerificationError, match="different path"):
        verify_blocks(model, -x, graph, find_blocks(graph))


def test_every_block_reports_its_error() -> None:
    case = zoo.cases()["post_activation_inplace"]
    graph = resprobe.capture(case.model, case.inputs)
    checks = verify_blocks(case.model, case.inputs, graph, find_blocks(graph))
    assert [(c.ok, c.error) for c in checks] == [(True, 0.0)] * 3


class CachedIndex(torch.nn.Module):
    """A relative-position table built on the first call only (``lru_cache``-style, as BEiT
    does): the captured pass records ops that the replay skips."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = _table(x.shape[-1])
        x = x + self.fc1(x) + bias
        return x + self.fc2(x)


_TABLES: dict[int, torch.Tensor] = {}


def _table(n: int) -> torch.Tensor:
    if n not in _TABLES:
        _TABLES[n] = torch.arange(n).float().mul(0.0)
    return _TABLES[n]


def test_a_first_pass_that_fills_a_cache_still_verifies() -> None:
    _TABLES.clear()
    model, x = CachedIndex(), torch.randn(2, 4)
    graph = resprobe.capture(model, x)
    blocks = resprobe.find_blocks(graph)
    checks = resprobe.verify_blocks(model, x, graph, blocks)
    assert len(checks) == len(blocks) >= 1 and all(c.ok for c in checks)
