"""Data-parallel analysis, side by side in one run: ``resprobe analyze`` measuring the 24-block
digits network on 7200 images in one process, and the same under ``torchrun --nproc-per-node 2``
(each process measures every other batch; the sums are added up once). Wall time of the whole
command, start-up included, and of the start-up alone (the same command on one batch), so the
scaling of the measurement itself can be read off. Rounds alternate; medians are printed.

Run:  python benchmarks/distributed.py

On a machine with two cores, two processes with one thread each against one process with
two threads: the measurement should take about as long or less (the work splits, no thread
contends inside a process); the reports are equal (tests/test_distributed.py).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch


def data(folder: str, samples: int) -> str:
    path = os.path.join(folder, f"digits-{samples}.pt")
    g = torch.Generator().manual_seed(0)
    torch.save({"inputs": torch.randn(samples, 1, 8, 8, generator=g),
                "targets": torch.randint(0, 10, (samples,), generator=g)}, path)
    return path


def run(processes: int, path: str, out: str) -> float:
    args = ["analyze", "resprobe.examples:digits_deep_resnet", "--data", path, "--batch-size", "120",
            "--probe", "refinement", "--probe", "gradients", "-q", "--format", "json", "-o", out]
    if processes == 1:
        command = [sys.executable, "-m", "resprobe", *args]
        env = {**os.environ, "OMP_NUM_THREADS": "2"}
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={processes}", "-m", "resprobe", *args]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main(rounds: int = 3) -> None:
    with tempfile.TemporaryDirectory() as folder:
        big, small = data(folder, 7200), data(folder, 240)
        times: dict[tuple[int, str], list[float]] = {}
        for _ in range(rounds):
            for processes in (1, 2):
                for name, path in (("7200 images", big), ("start-up (240)", small)):
                    out = os.path.join(folder, f"r{processes}")
                    times.setdefault((processes, name), []).append(run(processes, path, out))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{'':18} {'1 process':>10} {'2 processes':>12} {'ratio 2/1':>10}")
        for name in ("7200 images", "start-up (240)"):
            one, two = med[(1, name)], med[(2, name)]
            print(f"{name:18} {one:9.1f}s {two:11.1f}s {two / one:9.2f}x")
        one = med[(1, "7200 images")] - med[(1, "start-up (240)")]
        two = med[(2, "7200 images")] - med[(2, "start-up (240)")]
        print(f"{'measurement only':18} {one:9.1f}s {two:11.1f}s {two / one:9.2f}x")


if __name__ == "__main__":
    main()
