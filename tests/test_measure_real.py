"""Measurement on real architectures nobody here wrote: every residual block measured, and the
instrumented pass computes exactly what the model computes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from test_real_models import _hf_model

import resprobe

pytestmark = pytest.mark.zoo


def _torchvision(name: str, size: int = 64) -> Callable[[], tuple[torch.nn.Module, Any]]:
    def make() -> tuple[torch.nn.Module, Any]:
        tv = pytest.importorskip("torchvision")
        return getattr(tv.models, name)(weights=None).eval(), torch.randn(2, 3, size, size)
    return make


def _timm(name: str) -> Callable[[], tuple[torch.nn.Module, Any]]:
    def make() -> tuple[torch.nn.Module, Any]:
        timm = pytest.importorskip("timm")
        return timm.create_model(name, pretrained=False).eval(), torch.randn(2, 3, 224, 224)
    return make


def _hf(kind: str) -> Callable[[], tuple[torch.nn.Module, Any]]:
    def make() -> tuple[torch.nn.Module, Any]:
        ids = torch.randint(0, 64, (2, 8))
        mask = torch.ones_like(ids)
        mask[1, 6:] = 0
        return _hf_model(kind, "sdpa").eval(), {"input_ids": ids, "attention_mask": mask}
    return make


def _t5() -> tuple[torch.nn.Module, Any]:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.T5Config(num_layers=2, num_decoder_layers=3, d_model=32, d_ff=64, num_heads=4,
                                d_kv=8, vocab_size=64)
    inputs = {"input_ids": torch.randint(0, 64, (2, 8)), "decoder_input_ids": torch.randint(0, 64, (2, 5))}
    return transformers.T5ForConditionalGeneration(cfg).eval(), inputs


CASES = {
    "resnet18": (_torchvision("resnet18"), "self-ce", 0),
    "convnext_tiny": (_torchvision("convnext_tiny"), "self-ce", 0),
    "swin_t": (_torchvision("swin_t", 224), "self-ce", 12),
    "mobilenet_v3_small": (_torchvision("mobilenet_v3_small"), "self-ce", 0),
    "timm-levit_128s": (_timm("levit_128s"), "self-ce", 0),
    "gpt2": (_hf("gpt2"), "next-token", 3),
    "bert": (_hf("bert"), "projection", 3),
    "llama": (_hf("llama"), "next-token", 3),
    "t5": (_t5, "next-token", 2 + 3),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_block_measured_and_outputs_unchanged(case: str) -> None:
    make, objective, layers = CASES[case]
    torch.manual_seed(0)
    model, raw = make()
    inputs = resprobe.Inputs.of(raw)
    graph = resprobe.capture(model, inputs)
    blocks = resprobe.find_blocks(graph)
    m = resprobe.measure(model, graph, blocks, resprobe.example_data(inputs))
    assert m.objective["name"] == objective
    residual = [b.name for b in blocks if b.is_residual]
    assert sorted(m.blocks) == sorted(residual)
    for name, v in m.blocks.items():
        for key in ("update_ratio", "block_influence", "grad_norm", "skip_gain", "branch_gain",
                    "param_grad_norm"):
            assert v[key] is not None and v[key] == v[key], (name, key)  # measured, not NaN
    identity = [b.name for b in blocks if b.skip_kind == "identity"]
    assert all(m.blocks[n]["skip_gain"] == pytest.approx(1.0, abs=1e-4) for n in identity)
    assert sum(len(s["layers"]) for s in m.streams) == layers
    with torch.no_grad():
        plain = resprobe.main_output(model(*inputs.args, **inputs.kwargs))
        with resprobe.gated(model, graph, blocks) as gates:
            assert torch.equal(resprobe.main_output(gates.run(inputs)), plain)


def test_zero_initialised_head_leaves_gains_undefined_and_says_so() -> None:
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = tv.models.VisionTransformer(image_size=32, patch_size=16, num_layers=2, num_heads=2,
                                        hidden_dim=16, mlp_dim=32).eval()  # the head starts at zero
    x = torch.randn(2, 3, 32, 32)
    graph = resprobe.capture(model, x)
    data = resprobe.example_data(resprobe.Inputs((x,)))
    m = resprobe.measure(model, graph, resprobe.find_blocks(graph), data)
    assert all(v["grad_norm"] == 0 and v["branch_gain"] is None for v in m.blocks.values())
    assert all(v["update_ratio"] is not None for v in m.blocks.values())
    assert any("exactly zero" in n for n in m.notes)
