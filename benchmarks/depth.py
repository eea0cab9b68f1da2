"""Cost of the effective-depth and lesion probes, as ratios to one plain forward or backward
pass, measured side by side in one run.

Run:  python benchmarks/depth.py

- estimate: the Poisson-binomial profile from the measured gains (pure arithmetic on top of
  the measurement pass); its ratio is to one plain backward pass.
- exact profile: ``exact_profile`` on one batch, minus its one forward pass, in plain
  backward-pass equivalents; the target is <= n/2 for a stream of n blocks.
- single-block lesions: the n lesioned forward passes of ``lesion`` (the degradation curve
  and the baseline excluded), in plain forward-pass equivalents; the target is <= n/2.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

import resprobe
from resprobe.depth import estimate, exact_profile
from resprobe.examples import digits_deep_resnet, digits_test_path
from resprobe.lesion import lesion


def median_time(fn: Callable[[], Any], reps: int = 5) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    loaded = digits_deep_resnet()
    assert loaded.inputs is not None
    model = loaded.model
    data = resprobe.load_data(digits_test_path(), loaded.inputs, batch_size=360)
    inputs, _ = next(iter(data))
    graph = resprobe.capture(model, inputs)
    blocks = resprobe.find_blocks(graph)
    n = sum(b.is_residual for b in blocks)
    params = list(model.parameters())

    def plain_forward() -> None:
        with torch.no_grad():
            model(*inputs.args)

    def plain_step() -> None:
        out = model(*inputs.args)
        torch.autograd.grad(out.logsumexp(1).sum(), params)

    fwd = median_time(plain_forward)
    bwd = median_time(plain_step) - fwd
    m = resprobe.measure(model, graph, blocks, data)
    a = [v["skip_gain"] for v in m.blocks.values()]
    g = [v["branch_gain"] for v in m.blocks.values()]
    est = median_time(lambda: estimate(a, g), reps=20)
    exact = median_time(lambda: exact_profile(model, graph, blocks, data), reps=3) - fwd
    no_curve = resprobe.Data("tensors", "", 360, 360, lambda: iter(data))
    lesions = median_time(lambda: lesion(model, graph, blocks, no_curve, draws=0), reps=3) - fwd
    print(f"DeepDigitsNet: {n} blocks, batch 360, CPU; plain forward {fwd * 1e3:.1f} ms, "
          f"backward {bwd * 1e3:.1f} ms")
    print(f"estimate:        {est / bwd:8.4f} backward passes (target ~0)")
    print(f"exact profile:   {exact / bwd:8.2f} backward passes (target <= n/2 = {n / 2:.0f})")
    print(f"single lesions:  {lesions / fwd:8.2f} forward passes "
          f"(target <= n/2 = {n / 2:.0f}; n = {n} deletions)")


if __name__ == "__main__":
    main()
