"""Effective depth and lesions against exact enumeration and manual deletion."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import resprobe
from resprobe import Inputs, capture, example_data, find_blocks
from resprobe.depth import (
    _held,
    _Runner,
    _stack,
    estimate,
    exact_profile,
    path_counts,
    path_gradients,
    poisson_binomial,
    sample_profile,
    stream_blocks,
    summary,
    total_variation,
)
from resprobe.examples import digits_resnet
from resprobe.lesion import lesion


class TanhBlocks(nn.Module):
    """n blocks ``x + W2 tanh(W1 x)``; ``rank`` < width gives low-rank branches."""

    def __init__(self, n: int, width: int = 16, rank: int | None = None, scale: float = 1.0, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(width, width)
        self.f = nn.ModuleList(nn.Sequential(nn.Linear(width, rank or width), nn.Tanh(),
                                             nn.Linear(rank or width, width)) for _ in range(n))
        with torch.no_grad():
            for f in self.f:
                f[2].weight.mul_(scale)
        self.out = nn.Linear(width, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.inp(x)
        for f in self.f:
            x = x + f(x)
        return self.out(x)  # type: ignore[no-any-return]


def _setup(model: nn.Module, x: Any) -> tuple[resprobe.Graph, list[resprobe.Block], Inputs]:
    inputs = Inputs.of(x)
    graph = capture(model, inputs)
    return graph, find_blocks(graph), inputs


def _enumerate(model: nn.Module, graph: resprobe.Graph, blocks: list[resprobe.Block], inputs: Inputs
               ) -> tuple[list[tuple[int, ...]], list[Tensor], Tensor, Tensor]:
    chain = stream_blocks(blocks)[0]
    n = len(chain)
    patterns = [tuple(i for i in range(n) if mask >> i & 1) for mask in range(2 ** n)]
    with _held(model) as (m, tree):
        p = _Runner(m, tree, graph, blocks, None, copy=False).run(inputs, None)
        grads = path_gradients(p, chain, patterns)
        fork = p.handles.nodes[chain[0].fork]
        truth = None
        if fork.requires_grad:
            (truth,) = torch.autograd.grad(p.losses.sum(), [fork], retain_graph=True)
    with _held(model) as (m, tree):
        q = _Runner(m, tree, graph, blocks, None, copy=True).run(inputs, None)
        stack, at_input = _stack(q, chain, q.losses.sum(), n)
    return patterns, grads, at_input if truth is None else truth, stack


@pytest.mark.parametrize("case", ["tanh", "digits"])
def test_all_gate_patterns_sum_to_the_gradient_and_group_into_the_exact_profile(case: str) -> None:
    if case == "tanh":
        model: nn.Module = TanhBlocks(8).eval()
        graph, blocks, inputs = _setup(model, torch.randn(4, 16))
    else:  # post-activation blocks and projection shortcuts (skip gain != 1)
        loaded = digits_resnet()
        assert loaded.inputs is not None
        model = loaded.model
        graph, blocks, inputs = _setup(model, loaded.inputs.args[0][:4])
    patterns, grads, truth, stack = _enumerate(model, graph, blocks, inputs)
    scale = float(truth.abs().max())
    torch.testing.assert_close(sum(grads), truth, rtol=1e-4, atol=1e-5 * scale)
    n = stack.shape[0] - 1
    for k in range(n + 1):
        by_length = sum(g for pat, g in zip(patterns, grads) if len(pat) == k)
        torch.testing.assert_close(stack[k], by_length, rtol=1e-4, atol=1e-5 * scale)


def test_exact_profile_reports_a_built_in_check_and_truncates_exactly() -> None:
    model = TanhBlocks(6).eval()
    graph, blocks, inputs = _setup(model, torch.randn(5, 16))
    full = exact_profile(model, graph, blocks, example_data(inputs))[0]
    assert full["check"] < 1e-5 and full["lengths"] == 6
    cut = exact_profile(model, graph, blocks, example_data(inputs), max_length=2)[0]
    assert cut["lengths"] == 2 and cut["check"] is None
    assert cut["norms"] == pytest.approx(full["norms"][:3], rel=1e-5)  # exact for the lengths kept


def test_sampler_converges_to_the_enumeration() -> None:
    model = TanhBlocks(6).eval()
    graph, blocks, inputs = _setup(model, torch.randn(4, 16))
    patterns, grads, _, _ = _enumerate(model, graph, blocks, inputs)
    per_length = [[float(g.reshape(4, -1).norm(dim=1).mean()) for pat, g in zip(patterns, grads)
                   if len(pat) == k] for k in range(7)]
    exact_means = [sum(v) / len(v) for v in per_length]
    everything = sample_profile(model, graph, blocks, inputs, samples=64)[0]  # >= C(6, k): every pattern
    assert everything["path_mean"] == pytest.approx(exact_means, rel=1e-5)
    assert everything["patterns"] == [math.comb(6, k) for k in range(7)]
    few = sample_profile(model, graph, blocks, inputs, samples=6, seed=1)[0]
    errors = [abs(a - b) / b for a, b in zip(few["path_mean"], exact_means)]
    assert max(errors) < 0.5 and sum(errors) / len(errors) < 0.2


def test_poisson_binomial_and_summary_by_hand() -> None:
    assert poisson_binomial([0.5, 0.5]) == pytest.approx([0.25, 0.5, 0.25])
    q = poisson_binomial([0.3] * 54)
    assert summary(q)["mean"] == pytest.approx(54 * 0.3, rel=1e-6) and sum(q) == pytest.approx(1.0)
    # Veit et al.'s ResNet-110: 54 blocks; branch gain ~0.27 puts the effective paths at lengths
    # up to 17, and they are 0.45% of all paths
    s = summary(estimate([1.0] * 54, [0.27] * 54))
    assert s["window"] == [7, 17] and s["path_share"] == pytest.approx(0.0045, abs=2e-4)
    assert path_counts(4) == pytest.approx([0.0, math.log10(4), math.log10(6), math.log10(4), 0.0])
    assert total_variation([1, 0], [0, 1]) == 1.0


def _validated(model: nn.Module) -> dict[str, Any]:
    graph, blocks, inputs = _setup(model, torch.randn(16, 64, generator=torch.Generator().manual_seed(0)))
    report = resprobe.analyze(resprobe.Loaded(model, inputs), probes=("depth",),
                              settings=resprobe.Settings(validate=True))
    result = report.result("depth")
    assert result is not None
    return {"stream": result.summary["streams"][0], "notes": result.notes}


def test_estimate_is_trusted_for_dense_branches_and_flagged_for_low_rank_ones() -> None:
    dense = _validated(TanhBlocks(12, width=64).eval())
    assert dense["stream"]["validation"]["tv_estimate_vs_exact"] < 0.05
    assert dense["stream"]["validation"]["trusted"] and not dense["notes"]
    low_rank = _validated(TanhBlocks(12, width=64, rank=2, scale=3.0).eval())
    assert low_rank["stream"]["validation"]["tv_estimate_vs_exact"] > 0.05
    assert not low_rank["stream"]["validation"]["trusted"]
    assert any("do not trust it here" in n for n in low_rank["notes"])


def test_magnitude_estimate_follows_the_gains() -> None:
    assert estimate([1.0, 1.0], [1.0, 3.0]) == pytest.approx(poisson_binomial([0.5, 0.75]))
    net = estimate([1.0, 1.0], [1.0, 1.0], "net")
    assert net == pytest.approx([1 / (1 + math.sqrt(2) + 1), math.sqrt(2) / (2 + math.sqrt(2)),
                                 1 / (2 + math.sqrt(2))])


def test_t5_streams_get_exact_profiles() -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.T5Config(num_layers=2, num_decoder_layers=2, d_model=32, d_ff=64, num_heads=4, d_kv=8,
                                vocab_size=64)
    model = transformers.T5ForConditionalGeneration(cfg).eval()
    inputs = {"input_ids": torch.randint(0, 64, (2, 6)), "decoder_input_ids": torch.randint(0, 64, (2, 4))}
    graph, blocks, inp = _setup(model, inputs)
    got = exact_profile(model, graph, blocks, example_data(inp))
    assert sorted(got) == [0, 1] and [got[s]["lengths"] for s in (0, 1)] == [4, 6]
    assert all(got[s]["check"] < 1e-4 for s in (0, 1))


def test_deleting_a_zero_branch_changes_nothing() -> None:
    model = TanhBlocks(4).eval()
    with torch.no_grad():
        model.f[2][2].weight.zero_()
        model.f[2][2].bias.zero_()
    graph, blocks, inputs = _setup(model, torch.randn(6, 16))
    got = lesion(model, graph, blocks, example_data(inputs))
    assert got["blocks"]["f.2"]["loss_change"] == 0 and got["blocks"]["f.2"]["output_change"] == 0
    assert got["blocks"]["f.2"]["agreement"] == 1 and got["blocks"]["f.1"]["output_change"] > 0


def test_lesion_equals_a_manual_deletion() -> None:
    loaded = digits_resnet()
    assert loaded.inputs is not None
    model, x = loaded.model, loaded.inputs.args[0]
    graph, blocks, inputs = _setup(model, x)
    got = lesion(model, graph, blocks, example_data(inputs))
    with torch.no_grad():
        full = model(x)
        block = model.layers[1]
        forward = block.forward
        block.forward = lambda t: torch.relu(block.shortcut(t))  # delete the branch by hand
        try:
            manual = model(x)
        finally:
            block.forward = forward
    change = ((manual - full).norm(dim=1) / full.norm(dim=1)).mean().item()
    assert got["blocks"]["layers.1"]["output_change"] == pytest.approx(change, rel=1e-5)
    agreement = (manual.argmax(1) == full.argmax(1)).float().mean().item()
    assert got["blocks"]["layers.1"]["agreement"] == pytest.approx(agreement)
    assert [c["deleted"] for c in got["curve"]] == [1, 2, 3, 4, 5, 6]


class FromInput(nn.Module):
    """The stream starts at the model's input (a leaf that takes no gradient)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.f = nn.ModuleList(nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8)) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        for f in self.f:
            x = x + f(x)
        return x


def test_a_stream_starting_at_the_input_enumerates_and_checks() -> None:
    model = FromInput().eval()
    graph, blocks, inputs = _setup(model, torch.randn(3, 8))
    patterns, grads, truth, stack = _enumerate(model, graph, blocks, inputs)
    x = inputs.args[0].clone().requires_grad_(True)
    (want,) = torch.autograd.grad(_objective(model(x)), [x])  # autograd on a fresh leaf: independent
    torch.testing.assert_close(truth, want, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(sum(grads), want, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(stack.sum(0), want, rtol=1e-4, atol=1e-6)
    for k in range(5):
        torch.testing.assert_close(stack[k], sum(g for p, g in zip(patterns, grads) if len(p) == k),
                                   rtol=1e-4, atol=1e-6)


def _objective(out: Tensor) -> Tensor:
    """The objective the probes choose for this output, summed over samples."""
    return resprobe.choose_objective(None, out, Inputs(), None).losses(out, Inputs(), None).sum()


def test_a_cut_exact_profile_keeps_path_shares_and_validation_honest() -> None:
    model = TanhBlocks(12, width=64).eval()
    graph, blocks, inputs = _setup(model, torch.randn(16, 64, generator=torch.Generator().manual_seed(0)))
    cut = exact_profile(model, graph, blocks, example_data(inputs), max_length=3)[0]
    full = exact_profile(model, graph, blocks, example_data(inputs))[0]
    assert cut["path_share"] < 0.5  # shares of all 2^12 paths, not of 2^3
    report = resprobe.analyze(resprobe.Loaded(model, inputs), probes=("depth",),
                              settings=resprobe.Settings(validate=True, max_length=3))
    result = report.result("depth")
    assert result is not None
    validation = result.summary["streams"][0]["validation"]
    assert validation["trusted"] and validation["tv_estimate_vs_exact"] < 0.05
    assert full["check"] < 1e-5


def test_the_sampler_uses_the_datas_targets(tmp_path: Any) -> None:
    model = TanhBlocks(3).eval()
    x = torch.randn(6, 16)
    torch.save((x, torch.arange(6) % 10), tmp_path / "d.pt")
    graph, blocks, inputs = _setup(model, x)
    data = resprobe.load_data(str(tmp_path / "d.pt"), inputs)
    report = resprobe.analyze(resprobe.Loaded(model, inputs), probes=("gradients", "depth"), data=data,
                              objective="task", settings=resprobe.Settings(sample=2))
    result = report.result("depth")
    assert result is not None and "sampled" in result.summary["streams"][0]


def test_lesions_with_a_scalar_objective_and_a_deleted_branch_module() -> None:
    model = TanhBlocks(3).eval()
    graph, blocks, inputs = _setup(model, torch.randn(6, 16))
    per_sample = lesion(model, graph, blocks, example_data(inputs), objective="square", draws=0)
    scalar = lesion(model, graph, blocks, example_data(inputs), draws=0,
                    objective=lambda out, inp, t: 0.5 * out.pow(2).mean(1).sum())
    for name, v in per_sample["blocks"].items():  # one loss for the batch: 6 samples' worth of change
        assert scalar["blocks"][name]["loss_change"] == pytest.approx(6 * v["loss_change"], rel=1e-5)
    modules = lesion(model, graph, blocks, example_data(inputs), draws=0, modules=("f.1",))["modules"]
    # deleting the branch module f.1 (output := input) doubles its input instead of deleting the block
    assert modules["f.1"]["output_change"] > 0


class SequenceFirst(nn.Module):
    """nn.TransformerEncoderLayer's default layout: [T, N, D], the batch second."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0) for _ in range(2))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def test_batched_lesions_fall_back_when_the_copies_would_interact() -> None:
    import sys

    module = sys.modules["resprobe.lesion"]
    model = SequenceFirst().eval()
    graph, blocks, inputs = _setup(model, torch.randn(7, 3, 16))
    batched = lesion(model, graph, blocks, example_data(inputs), draws=1)
    stackable, module._stackable = module._stackable, lambda inp, size: False
    try:
        alone = lesion(model, graph, blocks, example_data(inputs), draws=1)
    finally:
        module._stackable = stackable
    for name, v in alone["blocks"].items():
        assert batched["blocks"][name]["output_change"] == pytest.approx(v["output_change"], rel=1e-5)


def _batched(x: Tensor, size: int) -> resprobe.Data:
    """``x`` cut into batches of ``size`` samples (no targets)."""
    def make() -> Any:
        return iter([(Inputs.of(x[i:i + size]), None) for i in range(0, x.shape[0], size)])
    return resprobe.Data("tensors", "x", int(x.shape[0]), size, make)


def test_the_sampler_covers_every_batch_and_does_not_depend_on_the_batch_size() -> None:
    model = TanhBlocks(4).double().eval()
    x = torch.randn(8, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    graph, blocks, _ = _setup(model, x)
    got = {size: sample_profile(model, graph, blocks, _batched(x, size), samples=3)[0] for size in (8, 1, 3)}
    assert [got[size]["batches"] for size in (8, 1, 3)] == [1, 8, 3]
    assert all(g["samples"] == 8 for g in got.values())
    for size in (1, 3):
        assert got[size]["path_mean"] == pytest.approx(got[8]["path_mean"], rel=1e-6)
        assert got[size]["mean"] == pytest.approx(got[8]["mean"], rel=1e-6)
    # what the sampler used to measure: the first batch only
    first = sample_profile(model, graph, blocks, Inputs.of(x[:3]), samples=3)[0]
    assert first["samples"] == 3
    assert max(abs(a - b) / b for a, b in zip(first["path_mean"], got[3]["path_mean"])) > 1e-3


def test_the_sampler_probe_reports_what_it_covered() -> None:
    model = TanhBlocks(3).eval()
    x = torch.randn(7, 16, generator=torch.Generator().manual_seed(2))
    graph, blocks, inputs = _setup(model, x)
    report = resprobe.analyze(resprobe.Loaded(model, inputs), probes=("gradients", "depth"),
                              data=_batched(x, 3), settings=resprobe.Settings(sample=2))
    result = report.result("depth")
    assert result is not None
    sampled = result.summary["streams"][0]["sampled"]
    assert sampled["samples"] == 7 and sampled["batches"] == 3


def test_a_cut_exact_profile_says_so() -> None:
    from resprobe._cli_text import summary as cli_summary

    model = TanhBlocks(6).eval()
    graph, blocks, inputs = _setup(model, torch.randn(5, 16, generator=torch.Generator().manual_seed(3)))
    assert exact_profile(model, graph, blocks, example_data(inputs))[0]["truncated_at"] is None
    assert exact_profile(model, graph, blocks, example_data(inputs), max_length=6)[0]["truncated_at"] is None
    cut = exact_profile(model, graph, blocks, example_data(inputs), max_length=2)[0]
    assert cut["truncated_at"] == 2 and cut["window"][1] <= 2  # the kept lengths only
    report = resprobe.analyze(resprobe.Loaded(model, inputs), probes=("gradients", "depth"),
                              settings=resprobe.Settings(exact=True, max_length=2))
    result = report.result("depth")
    assert result is not None and result.summary["streams"][0]["exact"]["truncated_at"] == 2
    assert any("over the lengths kept only" in n for n in result.notes)
    line = next(t for t in cli_summary(report).splitlines() if t.startswith("effective depth"))
    assert line.endswith("(lengths <= 2 only)")
    uncut = resprobe.analyze(resprobe.Loaded(model, inputs), probes=("gradients", "depth"),
                             settings=resprobe.Settings(exact=True))
    assert "lengths <=" not in cli_summary(uncut)
