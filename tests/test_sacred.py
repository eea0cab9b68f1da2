"""After any analysis the model is bit-identical to before: parameters, buffers, training
flags, requires_grad, existing .grad, hooks, plain attributes and the global RNG state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from zoo import D, PreNormTransformer, mlp

import resprobe
from resprobe.examples import digits_resnet

PROBES = ("verify", "refinement", "gradients", "depth", "lesion", "attribution")


def snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "params": {n: (p.detach().clone(), p.requires_grad, p._version, p.data_ptr())
                   for n, p in model.named_parameters()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "buffers": {n: b.clone() for n, b in model.named_buffers()},
        "training": [m.training for m in model.modules()],
        "hooks": [(dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks),
                   dict(m._backward_pre_hooks)) for m in model.modules()],
        "attributes": [sorted(m.__dict__) for m in model.modules()],
        "tensor_hooks": [p._backward_hooks for p in model.parameters()],
        "rng": torch.get_rng_state(),
    }


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    for name, (value, requires_grad, version, ptr) in before["params"].items():
        v2, r2, ver2, p2 = after["params"][name]
        assert torch.equal(value, v2) and requires_grad == r2 and version == ver2 and ptr == p2, name
    for name, g in before["grads"].items():
        g2 = after["grads"][name]
        assert (g is None and g2 is None) or (g is not None and g2 is not None and torch.equal(g, g2)), name
    for name, b in before["buffers"].items():
        assert torch.equal(b, after["buffers"][name]), name
    for key in ("training", "hooks", "attributes", "tensor_hooks"):
        assert before[key] == after[key], key
    assert torch.equal(before["rng"], after["rng"])


def _digits_in_train_mode() -> tuple[nn.Module, resprobe.Inputs, bool]:
    loaded = digits_resnet()
    assert loaded.inputs is not None
    model = loaded.model.train()  # batch norm in train mode: running stats must come back
    return model, loaded.inputs, True


def _transformer_with_state() -> tuple[nn.Module, resprobe.Inputs, bool]:
    torch.manual_seed(0)
    model = PreNormTransformer()
    model.layers[0].attn.q.weight.requires_grad_(False)  # a frozen weight stays frozen
    model.layers[1].mlp.fc.weight.grad = torch.full_like(model.layers[1].mlp.fc.weight, 0.5)  # kept
    model.layers[2].register_forward_hook(lambda *a: None)  # the user's own hook stays, alone
    ids = torch.randint(0, 50, (2, 6))
    return model, resprobe.Inputs((), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}), False


class InplaceResidual(nn.Module):
    """torchvision's pattern: ``out = f(x); out += x; relu_(out)``, made out of place only
    inside the instrumented pass."""

    def __init__(self) -> None:
        super().__init__()
        self.f1, self.f2 = mlp(), mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for f in (self.f1, self.f2):
            out = f(x)
            out += x
            x = torch.relu_(out)
        return x


def _inplace() -> tuple[nn.Module, resprobe.Inputs, bool]:
    torch.manual_seed(0)
    return InplaceResidual(), resprobe.Inputs((torch.randn(3, D),)), False


def _resnet18() -> tuple[nn.Module, resprobe.Inputs, bool]:
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = tv.models.resnet18(weights=None).train()
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    return model, resprobe.Inputs((torch.randn(2, 3, 64, 64),)), True


@pytest.mark.parametrize("make", [_digits_in_train_mode, _transformer_with_state, _inplace, _resnet18],
                         ids=["digits-train", "transformer-state", "inplace", "resnet18-train"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_model_is_bit_identical_after_every_probe(
        make: Callable[[], tuple[nn.Module, resprobe.Inputs, bool]], train: bool) -> None:
    model, inputs, _ = make()
    torch.manual_seed(123)
    before = snapshot(model)
    report = resprobe.analyze(resprobe.Loaded(model, inputs), probes=PROBES,
                              settings=resprobe.Settings(train=train, exact=True, sample=2, validate=True))
    assert_same(before, snapshot(model))
    gradients = report.result("gradients")
    assert gradients is not None and gradients.summary["measured"] > 0
    if train:
        assert report.model and report.result("refinement") is not None
