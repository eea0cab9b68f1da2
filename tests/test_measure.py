"""Refinement and gradient-flow numbers against independent computations: closed forms on
hand-set models, autograd at the block input, batching invariance, control-flow changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from zoo import PreNormTransformer

import resprobe
from resprobe import Inputs, capture, example_data, find_blocks, load_data, measure
from resprobe.capture import ModuleTree, forward, preserved
from resprobe.examples import digits_resnet
from resprobe.instrument import Instrument

D = 6


def orthogonal(d: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    return q.float()


class OrthBlocks(nn.Module):
    """y_k = x_k + c_k Q_k x_k: every branch is a scaled rotation, so its update ratio and its
    branch gain are exactly c_k for every sample."""

    def __init__(self, scales: tuple[float, ...] = (0.5, 2.0)):
        super().__init__()
        self.f = nn.ModuleList(nn.Linear(D, D, bias=False) for _ in scales)
        with torch.no_grad():
            for k, (lin, c) in enumerate(zip(self.f, scales)):
                lin.weight.copy_(c * orthogonal(D, k))

    def forward(self, x: Tensor) -> Tensor:
        for lin in self.f:
            x = x + lin(x)
        return x


def by_hand(model: OrthBlocks, x: Tensor) -> list[dict[str, float]]:
    """Every metric recomputed from plain autograd on the same model (objective: square)."""
    states, branches = [], []
    h = x.clone().requires_grad_(True)
    states.append(h)
    for lin in model.f:
        b = lin(h)
        b.retain_grad()
        h = h + b
        h.retain_grad()
        branches.append(b)
        states.append(h)
    loss = (0.5 * h.pow(2).mean(1)).sum()
    params = [lin.weight for lin in model.f]
    grads = torch.autograd.grad(loss, [*states, *params])
    gs, gp = grads[: len(states)], grads[len(states):]
    out = []
    cos = nn.functional.cosine_similarity
    for k, (lin, b) in enumerate(zip(model.f, branches)):
        x_k, y_k, dy, dx = states[k], states[k + 1], gs[k + 1], gs[k]
        branch_part = dy @ lin.weight  # J^T delta for a linear branch
        out.append({
            "update_ratio": (b.norm(dim=1) / x_k.norm(dim=1)).mean().item(),
            "variance_ratio": (b.var(unbiased=False) / x_k.var(unbiased=False)).item(),
            "cos_branch_skip": cos(b, x_k).mean().item(),
            "block_influence": (1 - cos(x_k, y_k)).mean().item(),
            "grad_norm": dy.norm(dim=1).mean().item(),
            "skip_gain": 1.0,
            "branch_gain": (branch_part.norm(dim=1) / dy.norm(dim=1)).mean().item(),
            "iterative_cos": cos(b, dx).mean().item(),
            "lesion_first_order": (-(b * dy).sum(1)).mean().item(),
            "param_grad_norm": (gp[k] / x.shape[0]).norm().item(),
            "param_norm": lin.weight.norm().item(),
        })
    return out


def test_every_metric_matches_a_recomputation_by_hand() -> None:
    model = OrthBlocks()
    x = torch.randn(5, D, generator=torch.Generator().manual_seed(1))
    graph = capture(model, x)
    m = measure(model, graph, find_blocks(graph), example_data(Inputs((x,))), objective="square")
    assert m.objective["name"] == "square"
    for (name, got), want, c in zip(m.blocks.items(), by_hand(model, x), (0.5, 2.0)):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (name, key)
        assert got["update_ratio"] == pytest.approx(c, rel=1e-5)  # closed form: a scaled rotation
        assert got["branch_gain"] == pytest.approx(c, rel=1e-5)
        assert got["label"] == ("refine" if c < 1 else "rebuild")


def test_zero_branch_is_identity_and_labelled_idle() -> None:
    model = OrthBlocks((0.0, 0.25))
    x = torch.randn(4, D)
    graph = capture(model, x)
    first = measure(model, graph, find_blocks(graph), example_data(Inputs((x,)))).blocks["f.0"]
    assert first["update_ratio"] == 0 and first["block_influence"] == pytest.approx(0, abs=1e-7)
    assert first["branch_gain"] == 0 and first["lesion_first_order"] == 0 and first["label"] == "idle"


class _Split:
    """A listener that sums the raw gradients reaching each block input and keeps the
    watched tensors."""

    def __init__(self) -> None:
        self.grads: dict[tuple[int, str], Tensor] = {}
        self.nodes: dict[int, Tensor] = {}

    def joined(self, i: int, s: Tensor, b: Tensor, y: Tensor, plain: bool = False) -> None:
        pass

    def delta(self, i: int, grad: Tensor, b: Tensor) -> None:
        pass

    def entered(self, i: int, role: str, grad: Tensor) -> None:
        key = (i, role)
        self.grads[key] = grad if key not in self.grads else self.grads[key] + grad

    def node(self, node_id: int, out: Tensor) -> None:
        self.nodes[node_id] = out


def _split_case(name: str) -> tuple[nn.Module, Inputs]:
    torch.manual_seed(0)
    if name == "digits":
        loaded = digits_resnet()
        assert loaded.inputs is not None
        return loaded.model, loaded.inputs
    if name == "prenorm":
        ids = torch.randint(0, 50, (2, 7))
        return PreNormTransformer(), Inputs((), {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    tv = pytest.importorskip("torchvision")
    return tv.models.resnet18(weights=None).eval(), Inputs((torch.randn(2, 3, 64, 64),))


def _gated_pass(model: nn.Module, inputs: Inputs) -> tuple[Any, list[resprobe.Block], Instrument, _Split]:
    """One instrumented pass with every block's input watched: (output, blocks, plan, listener);
    the pass followed the graph (checked) and its autograd graph stays for the caller."""
    graph = capture(model, inputs)
    blocks = [b for b in find_blocks(graph) if b.is_residual]
    plan = Instrument(graph, blocks, watch=tuple(b.fork for b in blocks))
    listener = _Split()
    tree = ModuleTree(model)
    anchor = torch.zeros((), requires_grad=True)
    mismatches: list[Any] = []
    with preserved(model, tree, False), torch.enable_grad():
        out, rec = forward(model, tree, inputs, watcher=plan.watcher(listener),
                           rewrite=lambda r: plan.rewrites(r, listener, anchor, mismatches))
        assert plan.check(rec, mismatches)
    return out, blocks, plan, listener


@pytest.mark.parametrize("case", ["digits", "prenorm", "resnet18"])
def test_skip_part_plus_branch_part_is_the_gradient_at_the_block_input(case: str) -> None:
    model, inputs = _split_case(case)
    out, blocks, _, listener = _gated_pass(model, inputs)
    loss = resprobe.main_output(out).float().pow(2).sum()
    truth = torch.autograd.grad(loss, [listener.nodes[b.fork] for b in blocks])
    for i, (b, want) in enumerate(zip(blocks, truth)):
        got = listener.grads[(i, "skip")] + listener.grads[(i, "branch")]
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * float(want.abs().max()), msg=b.name)
        if b.skip_kind == "identity":  # an identity skip passes the join's gradient on unchanged
            assert listener.grads[(i, "skip")].shape == want.shape


def _numbers(m: resprobe.Measurement) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, values in m.blocks.items():
        for k, v in values.items():
            flat[f"{name}.{k}"] = v
    for s in m.streams:
        flat[f"stream{s['id']}.angular"] = s["angular_distance"]
        for layer in s["layers"]:
            flat[f"layer {layer['name']}"] = layer["block_influence"]
    return flat


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", ["digits", "prenorm"])
def test_one_batch_of_8_equals_eight_batches_of_1(case: str, dtype: torch.dtype, tmp_path: Path) -> None:
    """The statistics do not depend on batching: to 1e-6 relative on every per-block key for a
    float64 model (where the model's own outputs do not change with the batch size), to 1e-4
    in float32 (where they change in the last bits)."""
    model, inputs = _split_case(case)
    model = model.to(dtype)
    inputs = Inputs(tuple(a.to(dtype) if a.is_floating_point() else a for a in inputs.args), inputs.kwargs)
    rel = 1e-4 if dtype == torch.float32 else 1e-6
    if case == "digits":
        data = {"inputs": inputs.args[0][:8].to(dtype)}
    else:
        ids = torch.randint(0, 50, (8, 7), generator=torch.Generator().manual_seed(3))
        data = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    torch.save(data, tmp_path / "data.pt")
    graph = capture(model, inputs)
    blocks = find_blocks(graph)
    weights = torch.randn(7 * 16, generator=torch.Generator().manual_seed(4))

    def projection(output: Tensor, inputs: Inputs, targets: Any) -> Tensor:
        """A fixed random projection of each sample's output (well conditioned, unlike the
        mean square of a LayerNorm output, which is nearly constant)."""
        flat = resprobe.main_output(output).flatten(1)
        return (flat * weights[: flat.shape[1]]).sum(1)

    got = [_numbers(measure(model, graph, blocks, load_data(str(tmp_path / "data.pt"), inputs, batch_size=bs),
                            objective=projection if case == "prenorm" else None))
           for bs in (8, 1, 3)]
    assert got[0].keys() == got[1].keys() == got[2].keys()
    for key, want in got[0].items():
        for other in got[1:]:
            if isinstance(want, list):
                def nan(rows: list[list[float | None]]) -> Tensor:
                    return torch.tensor([[float("nan") if v is None else v for v in r] for r in rows],
                                        dtype=torch.float64)
                # stream matrices (angular distances) are written with 6 decimals
                torch.testing.assert_close(nan(other[key]), nan(want), rtol=rel, atol=1.5e-6, equal_nan=True)
            elif isinstance(want, float):
                assert other[key] == pytest.approx(want, rel=rel, abs=1e-8), key
            else:
                assert other[key] == want, key


class Branchy(nn.Module):
    """The middle block runs only when the running mean is positive: the path depends on data."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.middle, self.last = (nn.Linear(D, D) for _ in range(3))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.first(x)
        if x.mean() > 0:
            x = x + self.middle(x)
        return x + self.last(x)


def test_changed_control_flow_is_detected_and_blocks_matched_by_name(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Branchy()
    with torch.no_grad():
        model.first.bias.fill_(0.0)
        model.first.weight.copy_(torch.eye(D) * 0.1)
    up, down = torch.full((2, D), 1.0), torch.full((3, D), -1.0)
    graph = capture(model, up)
    assert len(find_blocks(graph)) == 3
    torch.save(torch.cat([up, down]), tmp_path / "x.pt")
    data = load_data(str(tmp_path / "x.pt"), Inputs((up,)), batch_size=2)  # batches: ++, --, -
    m = measure(model, graph, find_blocks(graph), data)
    assert m.blocks["first"]["samples"] == 5 and m.blocks["last"]["samples"] == 5
    assert m.blocks["middle"]["samples"] == 2
    assert any("control flow changed on 2 batch(es)" in n and "middle" in n for n in m.notes)


def test_meta_and_graph_only_sources_are_not_measured() -> None:
    with torch.device("meta"):
        model = OrthBlocks()
    report = resprobe.analyze(resprobe.Loaded(model, Inputs((torch.randn(2, D, device="meta"),))))
    for probe in ("refinement", "gradients"):
        result = report.result(probe)
        assert result is not None and result.summary["measured"] == 0
        assert "meta device" in result.notes[0]
    assert report.objective is None


class InplaceReader(nn.Module):
    """The branch ends in ``h.mul_(x)``: an in-place op that reads the block input ``x``."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.f = nn.Linear(D, D), nn.Linear(D, D)

    def forward(self, x: Tensor) -> Tensor:
        x = self.a(x)
        h = self.f(x.relu())
        return x + h.mul_(x)


def test_an_in_place_reader_of_the_block_input_is_gated_too() -> None:
    torch.manual_seed(0)
    out, blocks, plan, listener = _gated_pass(InplaceReader(), Inputs((torch.randn(4, D),)))
    assert not plan.ungated()
    (want,) = torch.autograd.grad(out.sum(), [listener.nodes[blocks[0].fork]])
    got = listener.grads[(0, "skip")] + listener.grads[(0, "branch")]
    torch.testing.assert_close(got, want)


class InplaceSkipJoin(nn.Module):
    """``x.add_(f(x))`` overwrites the skip: the stream's states must be taken before that."""

    def __init__(self, inplace: bool):
        super().__init__()
        self.a, self.f1, self.f2 = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        x = self.a(x)
        x = x.add_(self.f1(x.relu())) if self.inplace else x + self.f1(x.relu())
        return x + self.f2(x.relu())


def test_in_place_join_into_the_skip_keeps_the_stream_states() -> None:
    x = torch.randn(4, D)
    got = []
    for inplace in (False, True):
        torch.manual_seed(0)
        model = InplaceSkipJoin(inplace)
        graph = capture(model, x)
        m = measure(model, graph, find_blocks(graph), example_data(Inputs((x,))))
        got.append((m.streams[0]["angular_distance"], {k: v["block_influence"] for k, v in m.blocks.items()}))
    assert got[0] == got[1]


class RMSNorm(nn.Module):
    """LLaMA's norm: an fp32 round trip that is a no-op without autocast, a real cast with it."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(D))

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x = x.to(torch.float32)
        return self.w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)).to(dtype)


class RMSBlocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.n1, self.f1, self.n2, self.f2 = nn.Linear(D, D), RMSNorm(), nn.Linear(D, D), RMSNorm(), \
            nn.Linear(D, D)

    def forward(self, x: Tensor) -> Tensor:
        x = self.a(x)
        x = x + self.f1(self.n1(x))
        return x + self.f2(self.n2(x))


def test_autocast_records_other_ops_and_is_captured_again() -> None:
    torch.manual_seed(0)
    model, x = RMSBlocks(), torch.randn(4, 3, D)
    graph = capture(model, x)
    m = measure(model, graph, find_blocks(graph), example_data(Inputs((x,))),
                settings=resprobe.Settings(dtype="bfloat16"))
    full = measure(model, graph, find_blocks(graph), example_data(Inputs((x,))))
    assert any("captured again" in n for n in m.notes)
    for name, v in m.blocks.items():
        assert v["update_ratio"] == pytest.approx(full.blocks[name]["update_ratio"], rel=0.05)


def test_a_scalar_objective_still_counts_samples() -> None:
    model, x = OrthBlocks(), torch.randn(5, D)
    graph = capture(model, x)
    per_sample = measure(model, graph, find_blocks(graph), example_data(Inputs((x,))), objective="square")
    total = measure(model, graph, find_blocks(graph), example_data(Inputs((x,))),
                    objective=lambda out, inp, t: 0.5 * out.pow(2).mean(1).sum())
    for name, v in total.blocks.items():
        assert v["samples"] == 5
        assert v["param_grad_norm"] == pytest.approx(per_sample.blocks[name]["param_grad_norm"], rel=1e-5)
