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
