"""The bit-identical guarantee, where it lives: a model held by a ``Session`` is left exactly as
found (parameters, buffers, requires_grad, training flags, hooks, plain attributes, the RNG
states), also when the body raises; the session knows the model's device, moves batches
there and runs the gated forward (re-captured, and adopted when the blocks are the same)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn
from zoo import D, mlp

from resprobe import Inputs, capture, exact_profile, example_data, find_blocks, lesion, sample_profile
from resprobe.instrument import Instrument
from resprobe.session import Session, Steps


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything about ``model`` an analysis must leave as it is, and the global RNG state."""
    return {
        "params": {n: (p.detach().clone(), p.requires_grad, p._version, p.data_ptr())
                   for n, p in model.named_parameters()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "buffers": {n: (b.clone(), b._version, b.data_ptr(), id(b)) for n, b in model.named_buffers()},
        "training": [m.training for m in model.modules()],
        "hooks": [[(k, dict(v)) for k, v in sorted(m.__dict__.items()) if "hook" in k and isinstance(v, dict)]
                  + [m.__dict__.get("_is_full_backward_hook")] for m in model.modules()],
        "parametrized": [sorted(getattr(m, "parametrizations", {})) for m in model.modules()],
        "attributes": [sorted(m.__dict__) for m in model.modules()],
        "tensor_hooks": [p._backward_hooks for p in model.parameters()],
        "rng": torch.get_rng_state(),
    }


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    """``after`` is ``before``, bit for bit (values, versions, storage and identity)."""
    for name, (value, requires_grad, version, ptr) in before["params"].items():
        v2, r2, ver2, p2 = after["params"][name]
        assert torch.equal(value, v2) and requires_grad == r2 and version == ver2 and ptr == p2, name
    for name, g in before["grads"].items():
        g2 = after["grads"][name]
        assert (g is None and g2 is None) or (g is not None and g2 is not None and torch.equal(g, g2)), name
    for name, (b, version, ptr, ident) in before["buffers"].items():
        b2, version2, ptr2, ident2 = after["buffers"][name]
        assert torch.equal(b, b2) and version == version2 and ptr == ptr2 and ident == ident2, name
    for key in ("training", "hooks", "attributes", "tensor_hooks", "parametrized"):
        assert before[key] == after[key], key
    assert torch.equal(before["rng"], after["rng"])


class Stateful(nn.Module):
    """Residual blocks with batch norm, dropout (it draws random numbers), a frozen weight, an
    integer parameter, a user's hook and attributes a forward pass fills (a cache, a counter)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.f, self.g = mlp(), mlp()
        self.bn = nn.BatchNorm1d(D)
        self.drop = nn.Dropout(0.5)
        self.steps = nn.Parameter(torch.zeros((), dtype=torch.long), requires_grad=False)
        self.g[0].weight.requires_grad_(False)
        self.g[2].weight.grad = torch.full_like(self.g[2].weight, 0.25)
        self.cache: dict[str, Tensor] = {}
        self.calls: list[int] = []
        self.user_hook = self.f.register_forward_hook(lambda *a: None)

    def forward(self, x: Tensor) -> Tensor:
        self.cache["last"] = x
        self.calls.append(len(self.calls))
        self.seen = True  # a new attribute
        x = x + self.drop(self.f(x))
        return x + self.bn(self.g(x))


def _stateful() -> tuple[Stateful, Inputs]:
    model = Stateful().train()
    model.cache["kept"] = torch.ones(1)
    return model, Inputs((torch.randn(4, D),))


def _meddle(model: Stateful, x: Tensor) -> None:
    """Everything a body may do to a held model: run it (batch norm in train mode, dropout),
    take gradients, install and remove hooks, set attributes, flip flags, draw random numbers."""
    out = model(x)
    torch.autograd.grad(out.square().sum(), [p for p in model.parameters() if p.requires_grad],
                        allow_unused=True)
    model.g.register_forward_pre_hook(lambda *a: None)
    model.register_full_backward_hook(lambda *a: None)
    model.user_hook.remove()
    model.f[0].weight.requires_grad_(False)
    model.g[0].weight.requires_grad_(True)
    model.eval()
    model.note = "set inside"
    model.cache.clear()
    torch.rand(3)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_a_held_model_is_left_bit_identical(train: bool) -> None:
    model, inp = _stateful()
    torch.manual_seed(7)
    before = snapshot(model)
    cache, kept = model.cache, model.cache["kept"]
    with Session(model, train=train) as session:
        assert all(m.training is train for m in model.modules())
        _meddle(model, inp.args[0])
    assert_same(before, snapshot(model))
    assert model.cache is cache and list(cache) == ["kept"] and cache["kept"] is kept and model.calls == []
    assert not hasattr(model, "note") and not hasattr(model, "seen")
    assert any("hooks" in n for n in session.restored) and any("attribute" in n for n in session.restored)


def test_a_held_model_is_left_bit_identical_when_the_body_raises() -> None:
    model, inp = _stateful()
    before = snapshot(model)
    with pytest.raises(KeyError, match="inside"), Session(model, train=True):
        _meddle(model, inp.args[0])
        raise KeyError("inside")
    assert_same(before, snapshot(model))


def test_batch_norm_statistics_are_updated_on_copies_only() -> None:
    model, inp = _stateful()
    stats = model.bn.running_mean
    value, version = stats.clone(), stats._version
    with Session(model, train=True) as session:
        model(inp.args[0])
        assert model.bn.running_mean is not stats and not torch.equal(model.bn.running_mean, value)
        assert session.tree.buffers["bn.running_mean"] is model.bn.running_mean
    assert model.bn.running_mean is stats and stats._version == version and torch.equal(stats, value)
    assert session.tree.buffers["bn.running_mean"] is stats
    assert any("'bn.running_mean'" in n for n in session.restored)


def test_trainable_thaws_frozen_float_parameters_for_the_session_only() -> None:
    model, _ = _stateful()
    with Session(model, trainable=True) as session:
        assert session.thawed == ["g.0.weight"]
        assert all(p.requires_grad for p in model.parameters() if p.is_floating_point())
        assert not model.steps.requires_grad  # an integer parameter cannot take gradients
    assert not model.g[0].weight.requires_grad and model.f[0].weight.requires_grad
    with Session(model) as session:
        assert session.thawed == [] and not model.g[0].weight.requires_grad


def test_the_rng_state_is_forked() -> None:
    model, inp = _stateful()
    torch.manual_seed(3)
    state = torch.get_rng_state()
    with Session(model, train=True):
        model(inp.args[0])  # dropout draws
        torch.randn(10)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_cuda_rng_state_is_forked_on_the_devices_of_the_parameters_and_inputs() -> None:
    model, inp = _stateful()
    model = model.cuda()
    inp = inp.to("cuda")
    state = torch.cuda.get_rng_state()
    with Session(model, train=True, inputs=inp) as session:
        assert session.cuda_devices() == [torch.cuda.current_device()]
        model(inp.args[0])
        torch.randn(10, device="cuda")
    assert torch.equal(torch.cuda.get_rng_state(), state)


def test_nested_sessions_restore_in_turn_and_a_session_is_held_once() -> None:
    model, inp = _stateful()
    before = snapshot(model)
    outer = Session(model, train=True)
    with outer, Session(model) as inner:
        _meddle(model, inp.args[0])
        assert inner.model is model
        with pytest.raises(RuntimeError, match="already"), outer:
            pass
    assert_same(before, snapshot(model))


def test_wrappers_are_unwrapped() -> None:
    model, _ = _stateful()
    session = Session(nn.DataParallel(model))
    assert session.model is model and session.notes == ["unwrapped DataParallel (.module)"]


def test_the_device_of_a_model_without_parameters() -> None:
    session = Session(nn.Sequential(nn.ReLU(), nn.Tanh()))
    assert session.device == torch.device("cpu")
    on_meta = Inputs(([torch.empty(2, device="meta")],), {"x": torch.empty(2)})
    assert session.device_for(on_meta) == torch.device("meta")  # it runs where its inputs are
    assert session.device_for(Inputs()) == torch.device("cpu")
    targets = torch.zeros(2)
    moved, same = session.on(on_meta, targets)
    assert moved is on_meta and same is targets  # and its batch stays there
    assert session.cuda_devices() == []


def test_batches_are_moved_to_the_device_of_the_parameters() -> None:
    model = nn.Linear(3, 3).to("meta")
    session = Session(model)
    assert session.device == torch.device("meta")
    inp = Inputs((torch.randn(2, 3), [torch.ones(2)]), {"mask": torch.ones(2, 3), "flag": True})
    moved, targets = session.on(inp, torch.zeros(2, dtype=torch.long))
    assert moved.args[0].is_meta and moved.args[1][0].is_meta and moved.kwargs["mask"].is_meta
    assert moved.kwargs["flag"] is True and targets.is_meta and targets.dtype == torch.long
    assert session.on(inp, "labels")[1] == "labels"  # targets that are not a tensor stay
    assert session.device_for(inp) == torch.device("meta")


class GradDependent(nn.Module):
    """Records one more op with autograd on than off (as some models do), with the same blocks."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.f = nn.ModuleList([mlp(), mlp()])

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            x = x * 1.0
        for f in self.f:
            x = x + f(x)
        return x


class Quiet:
    def joined(self, i: int, s: Tensor, b: Tensor, y: Tensor, plain: bool = False) -> None: ...
    def delta(self, i: int, grad: Tensor, b: Tensor) -> None: ...
    def entered(self, i: int, role: str, grad: Tensor) -> None: ...
    def node(self, node_id: int, out: Tensor) -> None: ...


def _follow(rerouted: bool, replan: Any) -> Any:
    model, x = GradDependent(), Inputs((torch.randn(2, D),))
    graph = capture(model, x)  # autograd off
    plan = Instrument(graph, find_blocks(graph))
    tried: list[Instrument] = []

    def attempt(p: Instrument) -> Any:
        tried.append(p)
        out, mismatches = session.instrumented(p, x, Quiet(), torch.zeros(()))
        return None if mismatches else out

    with Session(model) as session, torch.enable_grad():
        got = session.follow(x, plan, attempt, replan, grad=True, rerouted=rerouted)
    return plan, got, tried, model(x.args[0])


def test_the_gated_forward_adopts_a_graph_captured_again_with_the_same_blocks() -> None:
    plan, got, tried, want = _follow(False, Instrument)
    assert got.recaptured and got.adopted and got.plan is not plan and tried == [plan, got.plan]
    assert [b.name for b in got.plan.blocks] == [b.name for b in plan.blocks]
    assert torch.equal(got.result, want)


@pytest.mark.parametrize("rerouted", [False, True])
def test_the_gated_forward_runs_other_blocks_only_when_asked(rerouted: bool) -> None:
    plan, got, tried, _ = _follow(rerouted, lambda graph, blocks: Instrument(graph, blocks[:1]))
    assert got.recaptured and not got.adopted
    if rerouted:  # the caller matches the blocks by name
        assert got.plan is not plan and len(got.plan.blocks) == 1 and got.result is not None
    else:
        assert got.plan is plan and got.result is None and tried == [plan]


def test_a_pass_that_follows_its_graph_is_not_captured_again() -> None:
    model, x = GradDependent(), Inputs((torch.randn(2, D),))
    with torch.enable_grad():
        graph = capture(model, x, grad=True)
    plan = Instrument(graph, find_blocks(graph))
    with Session(model) as session, torch.enable_grad():
        out, mismatches = session.instrumented(plan, x, Quiet(), torch.zeros(()))
        got = session.follow(x, plan, lambda p: "ran", Instrument, grad=True)
    assert mismatches == [] and torch.equal(out, model(x.args[0]))
    assert got.plan is plan and got.result == "ran" and not got.recaptured


def test_steps_report_progress() -> None:
    seen: list[tuple[int, int]] = []
    step = Steps(lambda done, total: seen.append((done, total)), 3)
    for _ in range(3):
        step()
    Steps(None, 2)()  # without a progress callback: nothing to report
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_lesions_and_depth_profiles_report_progress_step_by_step() -> None:
    model = GradDependent().eval()
    x = Inputs((torch.randn(3, D),))
    graph = capture(model, x)
    blocks, data = find_blocks(graph), example_data(x)
    runs: dict[str, list[tuple[int, int]]] = {"lesion": [], "exact": [], "sample": []}
    lesion(model, graph, blocks, data, progress=lambda d, t: runs["lesion"].append((d, t)))
    exact_profile(model, graph, blocks, data, progress=lambda d, t: runs["exact"].append((d, t)))
    sample_profile(model, graph, blocks, data, samples=2, progress=lambda d, t: runs["sample"].append((d, t)))
    lesions = 2 + 2 * 3  # each block alone, then 3 random sets of each size (1 and 2)
    assert runs["lesion"] == [(k, lesions) for k in range(1, lesions + 1)]
    assert runs["exact"] == [(1, 2), (2, 2)]  # one step per block of the stream
    assert runs["sample"] == [(1, 3), (2, 3), (3, 3)]  # one per path length 0..2
