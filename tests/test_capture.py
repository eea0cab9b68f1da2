"""capture(): one eager forward pass recorded into a torch-free Graph, model left as found."""

from __future__ import annotations

import gc
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import torch
import torch.nn.functional as F
import zoo
from torch import Tensor, nn

import resprobe
from resprobe import CaptureError, Graph, InputsError, capture, find_blocks


def names(graph: Graph) -> list[str]:
    return [n.name for n in graph.nodes]


def test_nodes_in_execution_order_with_module_paths() -> None:
    model = zoo.IdentityMLP()
    graph = capture(model, torch.randn(2, zoo.D))
    assert names(graph) == ["input.x", "f.0.linear", "f.1.relu", "f.2.linear", "add"]
    assert [n.id for n in graph.nodes] == list(range(len(graph)))
    lin = graph.find("f.0.linear")
    assert lin.op == "torch.nn.functional.linear" and lin.module == "f.0"
    assert lin.params == ("f.0.weight", "f.0.bias")
    assert lin.shape == (2, 2 * zoo.D) and lin.dtype == "float32"
    assert graph.find("add").inputs == (0, 3)
    assert graph.outputs == (4,) and graph.inputs == (0,)


def test_graph_is_frozen_torch_free_and_converts_to_networkx() -> None:
    graph = capture(zoo.IdentityMLP(), torch.randn(2, zoo.D))
    with pytest.raises(AttributeError):
        graph.nodes[0].name = "x"  # type: ignore[misc]

    def no_tensors(value: Any) -> bool:
        if isinstance(value, torch.Tensor):
            return False
        if isinstance(value, dict):
            return all(no_tensors(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return all(no_tensors(v) for v in value)
        return True

    assert no_tensors(graph.to_dict())
    g = graph.to_networkx()
    assert isinstance(g, nx.DiGraph) and g.number_of_nodes() == len(graph)
    assert set(g.edges) == set(graph.edges) and nx.is_directed_acyclic_graph(g)
    assert g.nodes[1]["name"] == "f.0.linear"
    g.remove_node(0)  # a fresh copy: the Graph is untouched
    assert len(graph.to_networkx()) == len(graph)


def test_the_networkx_example_in_the_docs_runs_and_prints_what_they_say(
        capsys: pytest.CaptureFixture[str]) -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "python-api.md").read_text(encoding="utf-8")
    section = docs.split("## Graphs in networkx\n", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/python-api.md (networkx)", "exec"), {})
    printed = capsys.readouterr().out.strip()
    assert printed and f"It prints `{printed}`" in section


def test_inplace_ops_rebind_the_tensor() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x: Tensor) -> Tensor:
            h = self.lin(x)
            h.add_(1.0)
            F.relu(h, inplace=True)
            h[:, 0] = 0.0
            v = h[:, 1:]
            v.mul_(2.0)  # writing through a view changes h
            return h * 3

    graph = capture(M(), torch.randn(2, 4))
    ops = [n.op for n in graph.nodes]
    assert ops[2:] == ["Tensor.add_", "torch.nn.functional.relu", "Tensor.__setitem__",
                       "Tensor.__getitem__", "Tensor.mul_", "Tensor.mul"]
    chain = [n.inputs for n in graph.nodes[2:]]
    assert chain == [(1,), (2,), (3,), (4,), (5,), (6,)]
    assert all(n.inplace for n in graph.nodes[2:5]) and graph.nodes[6].inplace


def test_views_pass_throughs_and_shape_only_ops() -> None:
    class M(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            n, d = x.size(0), x.shape[1]
            y = x.contiguous().to(torch.float32)  # pass-throughs: no nodes
            z = torch.zeros_like(y) + y.new_ones(n, d)
            return y.view(n, d).t() + z.t()

    graph = capture(M(), torch.randn(2, 3))
    by = {n.name: n for n in graph.nodes}
    assert "contiguous" not in by and "to" not in by
    assert by["zeros_like"].inputs == () and by["new_ones"].inputs == ()
    assert by["view"].inputs == (0,)
    assert all(0 not in n.inputs for n in graph.nodes if n.name in ("zeros_like", "new_ones"))


def test_reused_module_gets_one_call_per_use() -> None:
    model = zoo.ReusedBlock()
    graph = capture(model, torch.randn(2, zoo.D))
    lin = [n for n in graph.nodes if n.module == "block.0"]
    assert [n.call for n in lin] == [0, 1, 2]
    assert [n.name for n in lin] == ["block.0.linear", "block.0.linear_1", "block.0.linear_2"]


def test_tied_weights_have_one_name() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, ids: Tensor) -> Tensor:
            return self.head(self.emb(ids))

    graph = capture(Tied(), torch.tensor([[1, 2, 3]]))
    assert graph.find("emb.embedding").params == ("emb.weight",)
    assert graph.find("head.linear").params == ("emb.weight",)


def test_tensors_created_inside_forward_and_no_grad_regions() -> None:
    class M(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            pos = torch.arange(x.shape[1], dtype=x.dtype)
            with torch.no_grad():
                scale = x.abs().max()
            return x * scale + pos

    graph = capture(M(), torch.randn(2, 5))
    assert graph.find("arange").inputs == ()
    assert graph.find("max").inputs == (graph.find("abs").id,)
    assert [graph[i].name for i in graph.find("add").inputs] == ["mul", "arange"]


def test_kwargs_only_none_arguments_and_structured_outputs() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, *, x: Tensor, mask: Tensor | None = None,
                    extra: dict[str, Tensor] | None = None) -> dict[str, Any]:
            h = self.lin(x)
            if mask is not None:
                h = h * mask
            return OrderedDict(last=h, pair=(h.sum(), x), none=None)

    graph = capture(M(), {"x": torch.randn(2, 4), "mask": None,
                          "extra": {"a": torch.ones(1)}})
    assert [graph[i].name for i in graph.inputs] == ["input.x", "input.extra.a"]
    assert [graph[i].name for i in graph.outputs] == ["lin.linear", "sum", "input.x"]


def test_model_output_dataclass_from_transformers() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2,
                                     intermediate_size=32, vocab_size=30)
    graph = capture(transformers.BertModel(config), {"input_ids": torch.tensor([[1, 2, 3]])})
    assert len(graph.outputs) == 2  # last_hidden_state and pooler_output


def test_state_cached_on_the_module_is_put_back() -> None:
    class Cached(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.table: Tensor | None = None
            self.cache: dict[str, Tensor] = {}

        def forward(self, x: Tensor) -> Tensor:
            if self.table is None:
                self.table = torch.ones(4) * 2
            if "bias" not in self.cache:
                self.cache["bias"] = self.lin.bias[:2]
            return self.lin(x) + self.table

    model = Cached()
    first = capture(model, torch.randn(2, 4))
    assert model.table is None and model.cache == {}
    second = capture(model, torch.randn(2, 4))
    assert names(first) == names(second) and "ones" in names(first)
    assert any("table" in n and "cache" in n and "restored" in n for n in first.notes)
    model(torch.randn(2, 4))  # a cache the user filled is kept as it is
    table, cached = model.table, model.cache["bias"]
    third = capture(model, torch.randn(2, 4))
    assert "ones" not in names(third) and model.table is table and model.cache["bias"] is cached


def test_writes_into_state_made_outside_forward_are_edges() -> None:
    class Cache(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.cache = torch.zeros(2, 4)  # plain attribute: neither parameter nor buffer

        def forward(self, x: Tensor) -> Tensor:
            self.cache[:, :] = self.lin(x)
            return self.cache * 2

    graph = capture(Cache(), torch.randn(2, 4))
    assert [graph[i].name for i in graph.find("mul").inputs] == ["setitem"]
    assert graph.find("setitem").inputs == (graph.find("lin.linear").id,)


@pytest.mark.parametrize("wrap", ["dataparallel", "compile"])
def test_wrappers_are_unwrapped(wrap: str) -> None:
    model = zoo.IdentityMLP()
    wrapped = nn.DataParallel(model) if wrap == "dataparallel" else torch.compile(model)
    plain = capture(model, torch.randn(2, zoo.D))
    graph = capture(wrapped, torch.randn(2, zoo.D))
    assert names(graph) == names(plain)
    assert any("unwrapped" in n for n in graph.notes)
    assert [b.name for b in find_blocks(graph)] == ["f"]


def test_grad_is_off_unless_asked() -> None:
    seen: list[bool] = []

    class Probe(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            seen.append(torch.is_grad_enabled())
            return x * 2

    capture(Probe(), torch.randn(2))
    capture(Probe(), torch.randn(2), grad=True)
    assert seen == [False, True]


def test_inference_mode_inputs() -> None:
    with torch.inference_mode():
        x = torch.randn(2, zoo.D)
    assert [b.name for b in find_blocks(capture(zoo.IdentityMLP(), x))] == ["f"]


def test_no_activation_outlives_capture() -> None:
    refs: list[weakref.ref[Tensor]] = []

    class Spy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.f = zoo.mlp()

        def forward(self, x: Tensor) -> Tensor:
            h = self.f(x)
            y = x + h
            refs.extend([weakref.ref(h), weakref.ref(y)])
            return y

    graph = capture(Spy(), torch.randn(2, zoo.D))
    gc.collect()
    assert len(refs) == 2 and all(r() is None for r in refs)
    assert len(graph) == 5


def _state(model: nn.Module) -> dict[str, Any]:
    return {
        "params": {n: (p.detach().clone(), p.requires_grad, None if p.grad is None
                       else p.grad.clone()) for n, p in model.named_parameters()},
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
        "training": [m.training for m in model.modules()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks),
                   len(m._forward_hooks_always_called)) for m in model.modules()],
        "attrs": [sorted(m.__dict__) for m in model.modules()],
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    for name, (p, rg, g) in a["params"].items():
        q, rg2, g2 = b["params"][name]
        if not torch.equal(p, q) or rg != rg2 or (g is None) != (g2 is None):
            return False
        if g is not None and not torch.equal(g, g2):
            return False
    return (all(torch.equal(v, b["buffers"][k]) for k, v in a["buffers"].items())
            and a["training"] == b["training"] and a["hooks"] == b["hooks"]
            and a["attrs"] == b["attrs"])


HOOK_CALLS: list[int] = []


class Counting(nn.Module):
    """Batch norm in train mode, a frozen layer, an existing .grad, a user hook, and a buffer
    the forward pass itself changes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        self.register_buffer("calls", torch.zeros(()))
        self.conv.weight.grad = torch.ones_like(self.conv.weight)
        self.hook_calls: list[int] = []
        self.frozen.register_forward_hook(lambda *_: HOOK_CALLS.append(1))

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        h = self.bn(self.conv(x)).mean((2, 3))
        return h + self.frozen(h) + torch.randn_like(h) * 0.0 + F.dropout(h, 0.5, self.training)


@pytest.mark.parametrize("train", [False, True])
def test_model_and_rng_are_left_exactly_as_found(train: bool) -> None:
    model = Counting().train()
    x = torch.randn(2, 3, 6, 6)
    before = _state(model)
    rng = torch.get_rng_state()
    graph = capture(model, x, train=train)
    assert _same(before, _state(model))
    assert torch.equal(rng, torch.get_rng_state())
    assert HOOK_CALLS == [1]  # the user's own hook ran, and is still there
    HOOK_CALLS.clear()
    assert any("calls" in n for n in graph.notes)
    if train:
        assert "dropout" in names(graph)


def test_forward_errors_say_where_and_leave_the_model_alone() -> None:
    model = zoo.IdentityMLP()
    before = _state(model)
    with pytest.raises(CaptureError, match=r"in module 'f\.0' at torch\.nn\.functional\.linear"):
        capture(model, torch.randn(2, zoo.D + 1))
    assert _same(before, _state(model))
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_a_forward_the_user_set_on_an_instance_is_kept() -> None:
    model = zoo.IdentityMLP()
    original = model.f.forward
    calls: list[int] = []

    def patched(x: Tensor) -> Tensor:
        calls.append(1)
        return original(x)

    model.f.forward = patched  # as accelerate-style hooks do
    graph = capture(model, torch.randn(2, zoo.D))
    assert model.f.__dict__["forward"] is patched and calls == [1]
    assert [b.name for b in find_blocks(graph)] == ["f"]


def test_bad_arguments() -> None:
    with pytest.raises(InputsError, match="torch.nn.Module"):
        capture("model", torch.randn(2))  # type: ignore[arg-type]
    with pytest.raises(InputsError, match="tensor, a tuple"):
        capture(zoo.IdentityMLP(), 3)


def test_inputs_accepts_every_form() -> None:
    x = torch.randn(2, zoo.D)
    model = zoo.IdentityMLP()
    graphs = [capture(model, v) for v in (x, (x,), [x], {"x": x}, resprobe.Inputs((x,)))]
    assert len({tuple(names(g)) for g in graphs}) == 1
