"""The trained transformer examples: a byte-level GPT trained on the standard library's sources
(scripts/train_lm.py) and a ViT trained on digits (scripts/train_digits_vit.py), each with its
randomly initialised twin. Their held-out numbers are checked from the models' own outputs."""

from __future__ import annotations

import math
from importlib.resources import files
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import resprobe
from resprobe.examples import ByteTokenizer, SmallLM, digits_test_path, small_lm

LAYERS = len(SmallLM().blocks)


@pytest.mark.parametrize("name", ["small_lm", "small_lm_random", "digits_vit", "digits_vit_random"])
def test_every_block_verifies(name: str) -> None:
    loaded = resprobe.load(f"resprobe.examples:{name}")
    assert loaded.weights == ("random" if name.endswith("_random") else "trained")
    report = resprobe.analyze(loaded, probes=("verify", "refinement"))
    assert report.blocks and all(b["metrics"]["verify"]["ok"] for b in report.blocks)
    if name.startswith("small_lm"):  # attention and MLP of every layer, one residual stream
        assert len(report.blocks) == 2 * LAYERS
        assert {b["stream"] for b in report.blocks} == {0}
    else:
        assert len(report.blocks) == 2 * 4


def _next_byte_loss(name: str) -> float:
    loaded = resprobe.load(f"resprobe.examples:{name}")
    assert loaded.inputs is not None
    (ids,) = loaded.inputs.args
    with torch.no_grad():
        logits = loaded.model(ids)
    assert logits.shape == (*ids.shape, 256)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).item()


def test_the_language_model_predicts_held_out_bytes() -> None:
    with (files("resprobe") / "data" / "small_lm_batch.pt").open("rb") as f:
        batch = torch.load(f, weights_only=True)
    ids = batch["input_ids"]
    assert ids.shape == (8, 128) and ids.dtype == torch.long
    targets = ids[:, 1:].flatten()
    unigram = -batch["unigram"].log()[targets].mean().item()  # the training bytes' frequencies
    counts = torch.bincount(targets, minlength=256).double()
    p = counts[counts > 0] / counts.sum()
    own = -(p * p.log()).sum().item()  # the batch's own byte entropy: a unigram fitted to the answers
    trained, random = _next_byte_loss("small_lm"), _next_byte_loss("small_lm_random")
    assert random > math.log(256) - 0.1  # an untrained model is uniform over bytes
    assert trained < random - 2.5
    assert trained < unigram - 0.8 and trained < own - 0.5


def test_the_byte_tokenizer_reads_text_data(tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("def f(x):\n    return x + 1\nimport os\n", encoding="utf-8")
    loaded = small_lm()
    assert loaded.inputs is not None
    data = resprobe.load_data(str(path), loaded.inputs, tokenizer=loaded.tokenizer)
    ((inputs, targets),) = list(data)
    ids, mask = inputs.kwargs["input_ids"], inputs.kwargs["attention_mask"]
    assert ids.shape == (3, 12) and targets is None  # lines are stripped
    assert ByteTokenizer().decode(ids[1][mask[1] > 0]) == "return x + 1"
    report = resprobe.analyze(loaded, probes=("verify", "refinement"), data=data)
    assert len(report.blocks) == 2 * LAYERS and all(b["metrics"]["verify"]["ok"] for b in report.blocks)


def test_the_vit_classifies_held_out_digits() -> None:
    test = torch.load(digits_test_path(), weights_only=True)
    loaded = resprobe.load("resprobe.examples:digits_vit")
    with torch.no_grad():
        predicted = loaded.model(test["inputs"]).argmax(1)
    accuracy = (predicted == test["targets"]).float().mean().item()
    assert len(test["targets"]) == 360 and accuracy > 0.95
