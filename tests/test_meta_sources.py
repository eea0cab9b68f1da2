"""--meta: any source built on the meta device, its structure reported with no weight allocated;
the structure is the one a capture with real weights finds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import resprobe
from resprobe.cli import main


def _blocks(loaded: resprobe.Loaded) -> list[tuple[str, str, int | None]]:
    graph = resprobe.capture(loaded)
    return [(b.name, b.skip_kind, b.stream) for b in resprobe.find_blocks(graph)]


@pytest.mark.zoo
def test_a_zoo_model_on_meta_has_the_blocks_it_has_with_weights() -> None:
    pytest.importorskip("torchvision")
    meta = resprobe.load("torchvision:resnet18", meta=True)
    assert meta.weights == "none" and all(p.is_meta for p in meta.model.parameters())
    assert any("meta device" in n for n in meta.notes)
    assert _blocks(meta) == _blocks(resprobe.load("torchvision:resnet18"))


def test_a_state_dict_with_meta_reads_the_architecture_only(tmp_path: Path) -> None:
    from resprobe.examples import DigitsResNet

    path = tmp_path / "weights.pt"
    torch.save(DigitsResNet().state_dict(), path)
    loaded = resprobe.load(str(path), arch="resprobe.examples:digits_resnet", meta=True)
    assert loaded.weights == "none" and all(p.is_meta for p in loaded.model.parameters())
    assert len(resprobe.find_blocks(resprobe.capture(loaded))) == 6


@pytest.mark.zoo
def test_a_mixture_of_experts_on_meta_runs_every_expert_and_finds_its_blocks() -> None:
    """Routing reads values (which experts were chosen): on meta every expert runs (nonzero is
    taken as all nonzero, an expert's index as 0), and the report says how many values were
    stood in for. The blocks are those found with real weights."""
    tf = pytest.importorskip("transformers")
    config = tf.MixtralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                              num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
                              num_experts_per_tok=2, vocab_size=64, experts_implementation="eager")
    torch.manual_seed(0)
    real = tf.MixtralForCausalLM(config).eval()
    with torch.device("meta"):
        meta = tf.MixtralForCausalLM(config).eval()
    ids = torch.randint(0, 64, (2, 8))
    graph = resprobe.capture(meta, {"input_ids": ids})
    names = [b.name for b in resprobe.find_blocks(graph)]
    assert names == [b.name for b in resprobe.find_blocks(resprobe.capture(real, {"input_ids": ids}))]
    assert names == [f"model.layers.{k}.{part}" for k in range(3) for part in ("self_attn", "mlp")]
    note = next(n for n in graph.notes if "placeholders" in n)
    assert "Tensor.__getitem__" in note and "3 modules" in note


@pytest.mark.zoo
def test_analyze_meta_on_the_command_line(tmp_path: Path) -> None:
    pytest.importorskip("torchvision")
    result = CliRunner().invoke(main, ["analyze", "torchvision:resnet50", "--meta", "-o", str(tmp_path / "r"),
                                       "-q", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert "ResNet (no weights: structure only): 16 residual block(s)" in result.stdout
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["model"]["weights"] == "none" and report["model"]["parameters"] > 25_000_000
    assert all(r["summary"].get("measured", 0) == 0 for r in report["results"])
    assert all(any("meta device" in n for n in r["notes"]) for r in report["results"])
