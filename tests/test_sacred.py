"""After any analysis the model is bit-identical to before: parameters, buffers, training
flags, requires_grad, existing .grad, hooks, plain attributes and the global RNG state, end to
end through every probe (the guarantee itself, ``Session``, is tested in test_session.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from test_session import assert_same, snapshot
from torch import nn
from zoo import D, PreNormTransformer, mlp

import resprobe
from resprobe.examples import digits_resnet

PROBES = ("verify", "refinement", "gradients", "depth", "lesion", "attribution")


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


class _Cube(torch.autograd.Function):
    """A custom autograd function inside a branch."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 3 * x ** 2 * grad


class NormedResidual(nn.Module):
    """Residual blocks whose weights are computed (parametrized spectral and weight norm, the
    old hook-based spectral norm), with batch norm, a custom autograd function, and every kind
    of hook a user can register."""

    def __init__(self) -> None:
        super().__init__()
        P = nn.utils.parametrizations
        self.a = P.spectral_norm(nn.Linear(D, D))
        self.b = P.weight_norm(nn.Linear(D, D))
        self.c = nn.utils.spectral_norm(nn.Linear(D, D))
        self.bn = nn.BatchNorm1d(D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.a(torch.tanh(x))
        x = x + self.bn(self.b(x))
        return x + _Cube.apply(torch.tanh(self.c(x)))


def _normed() -> tuple[nn.Module, resprobe.Inputs, bool]:
    torch.manual_seed(0)
    model = NormedResidual().train()
    noop = lambda *a, **k: None  # noqa: E731
    model.a.register_forward_pre_hook(noop)
    model.a.register_forward_pre_hook(noop, with_kwargs=True)
    model.b.register_forward_hook(noop, with_kwargs=True, always_call=True)
    model.bn.register_full_backward_hook(noop)
    model.bn.register_full_backward_pre_hook(noop)
    model.register_state_dict_pre_hook(noop)
    model._register_state_dict_hook(noop)
    model.register_load_state_dict_post_hook(noop)
    model.register_load_state_dict_pre_hook(noop)
    model.c.weight_orig.register_hook(lambda g: g)
    return model, resprobe.Inputs((torch.randn(4, D),)), True


@pytest.mark.parametrize("make", [_digits_in_train_mode, _transformer_with_state, _inplace, _resnet18,
                                  _normed],
                         ids=["digits-train", "transformer-state", "inplace", "resnet18-train", "normed"])
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


@pytest.mark.parametrize("make", [_digits_in_train_mode, _normed, _resnet18],
                         ids=["digits-train", "normed", "resnet18-train"])
def test_a_graph_built_before_the_call_still_runs_backward(
        make: Callable[[], tuple[nn.Module, resprobe.Inputs, bool]]) -> None:
    """Buffers the user's own graph saved (batch-norm statistics, spectral-norm vectors) keep
    their version counters, so ``backward()`` on a graph built before the call still works."""
    model, inputs, _ = make()
    loss = model(*inputs.args).square().mean()
    resprobe.analyze(resprobe.Loaded(model, inputs), probes=PROBES,
                     settings=resprobe.Settings(train=True, exact=True))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.zoo
@pytest.mark.parametrize("first", ["forward", "analyze"])
def test_transformers_output_capturing_hooks_are_left_as_found(first: str) -> None:
    """transformers installs output-capturing hooks on the first forward pass; an analysis in
    between must leave them (and the flag that says so) exactly as found."""
    transformers = pytest.importorskip("transformers")
    config = transformers.MistralConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                                        num_key_value_heads=2, intermediate_size=64, vocab_size=100,
                                        output_hidden_states=True)
    torch.manual_seed(0)
    model = transformers.MistralModel(config).eval()
    ids = torch.randint(0, 100, (1, 8))
    inputs = resprobe.Inputs((), {"input_ids": ids})
    if first == "forward":
        with torch.no_grad():
            reference = model(input_ids=ids)
    before = snapshot(model)
    resprobe.analyze(resprobe.Loaded(model, inputs), probes=PROBES)
    assert_same(before, snapshot(model))
    with torch.no_grad():
        out = model(input_ids=ids)
    if first == "analyze":
        with torch.no_grad():
            reference = model(input_ids=ids)
    assert len(out.hidden_states) == len(reference.hidden_states) == 3
    assert torch.equal(out.last_hidden_state, reference.last_hidden_state)
