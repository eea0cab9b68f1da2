"""The meta device: structure of huge models with no weights allocated."""

from __future__ import annotations

import gc

import pytest
import torch
import zoo
from torch import Tensor, nn

import resprobe
from resprobe import find_blocks, streams


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.zoo
def test_llama2_70b_on_meta() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=32000, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
        num_attention_heads=64, num_key_value_heads=8, max_position_embeddings=4096)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) > 68e9
    gc.collect()
    before = _rss_mb()
    graph = resprobe.capture(model, {"input_ids": torch.zeros(1, 16, dtype=torch.long)})
    found = find_blocks(graph)
    grown = _rss_mb() - before
    assert len(found) == 160 and [len(s.blocks) for s in streams(found)] == [160]
    assert found[0].name == "model.layers.0.self_attn" and found[-1].name == "model.layers.79.mlp"
    assert graph.device == "meta" and all(p.is_meta for p in model.parameters())
    assert grown < 500, f"capture grew the process by {grown:.0f} MB"
    assert resprobe.verify_blocks(model, {}, graph, found) == []


class ReadsValues(nn.Module):
    """Model code that reads tensor values: .item(), bool(), .tolist(), torch.all in an assert."""

    def __init__(self) -> None:
        super().__init__()
        self.f, self.g = zoo.mlp(), zoo.mlp()

    def forward(self, x: Tensor) -> Tensor:
        assert torch.all(torch.isfinite(x))
        scale = x.abs().max().item()
        steps = x.new_zeros(2).long().tolist()
        if bool(x.mean() > 100):
            x = x * 2
        x = x + self.f(x) * (1.0 + 0 * scale)
        return x + self.g(x) * (1 + len(steps))


def test_value_reads_on_meta_get_placeholders_and_a_note() -> None:
    with torch.device("meta"):
        model = ReadsValues()
    graph = resprobe.capture(model, torch.randn(2, zoo.D))
    assert [b.name for b in find_blocks(graph)] == ["f", "g"]
    (note,) = [n for n in graph.notes if "placeholders" in n]
    assert "Tensor.item" in note and "Tensor.__bool__" in note and "Tensor.tolist" in note


def test_value_reads_off_meta_are_real() -> None:
    graph = resprobe.capture(ReadsValues(), torch.randn(2, zoo.D))
    assert not any("placeholders" in n for n in graph.notes)


def test_control_flow_on_meta() -> None:
    with torch.device("meta"):
        model = zoo.ControlFlow()
    graph = resprobe.capture(model, torch.randn(2, zoo.D, device="meta"))
    assert [b.name for b in find_blocks(graph)] == ["stack_b.0", "stack_b.1"]
    assert any("may differ" in n for n in graph.notes)
