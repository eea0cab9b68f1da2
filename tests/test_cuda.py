"""On CUDA the instrumented pass never waits for the device (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

import resprobe
from resprobe.capture import ModuleTree
from resprobe.examples import digits_resnet
from resprobe.measure import Settings, _Run

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_instrumented_forward_and_backward_never_synchronise(dtype: str) -> None:
    loaded = digits_resnet()
    assert loaded.inputs is not None
    model, inputs = loaded.model.cuda(), loaded.inputs.to("cuda")
    graph = resprobe.capture(model, inputs)
    run = _Run(model, ModuleTree(model), graph, resprobe.find_blocks(graph), None, Settings(dtype=dtype))
    run.batch(inputs, None)  # the first batch also picks the objective
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        run.batch(inputs, None)  # gates, hooks and running sums: all on the device
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert run.samples == 32


@cuda
def test_cuda_and_cpu_agree() -> None:
    loaded = digits_resnet()
    assert loaded.inputs is not None
    cpu = resprobe.analyze(loaded)
    on_gpu = resprobe.analyze(resprobe.Loaded(loaded.model.cuda(), loaded.inputs.to("cuda")))
    for a, b in zip(cpu.blocks, on_gpu.blocks):
        for key in ("update_ratio", "block_influence"):
            assert a["metrics"]["refinement"][key] == pytest.approx(b["metrics"]["refinement"][key], rel=1e-3)
        assert a["metrics"]["gradients"]["branch_gain"] == pytest.approx(
            b["metrics"]["gradients"]["branch_gain"], rel=1e-3)


class _Split(torch.nn.Module):
    """The digits network with its layers on two devices: the stem and the first half of the
    blocks on ``first``, the rest and the head on ``second`` (activations moved between)."""

    def __init__(self, first: str, second: str):
        super().__init__()
        from resprobe.examples import DeepDigitsNet

        torch.manual_seed(0)
        net = DeepDigitsNet(True, stages=(2, 2, 2)).eval()
        self.first, self.second = first, second
        self.a = torch.nn.Sequential(net.stem, *net.layers[:3]).to(first)
        self.b = torch.nn.Sequential(*net.layers[3:]).to(second)
        self.head = net.head.to(second)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.b(self.a(x).to(self.second))
        return self.head(h.mean(dim=(2, 3)))  # type: ignore[no-any-return]


def _split_agrees(first: str, second: str) -> None:
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    probes = ("verify", "refinement", "gradients", "depth", "lesion")
    whole = resprobe.analyze(_Split("cpu", "cpu"), x, probes=probes)
    split = resprobe.analyze(_Split(first, second), x.to(first), probes=probes)
    assert [b.name for b in split.blocks] == [b.name for b in whole.blocks] and len(split.blocks) == 6
    for a, b in zip(whole.blocks, split.blocks):
        for probe in ("refinement", "gradients", "lesion"):
            for key, value in a.metrics[probe].items():
                if isinstance(value, float):
                    assert b.metrics[probe][key] == pytest.approx(value, rel=1e-3, abs=1e-6), (a.name, key)


@cuda
def test_a_model_split_between_the_cpu_and_a_gpu_is_measured_where_its_layers_are() -> None:
    _split_agrees("cpu", "cuda:0")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_a_model_split_across_two_gpus_is_measured_where_its_layers_are() -> None:
    _split_agrees("cuda:0", "cuda:1")
