"""Cost of ``resprobe.watch`` on a training step, side by side in one run: a plain training step
(forward, backward, optimizer step), a measured step (the gates ride along that step's own
passes; its record written), an off-step of a watched model (hooks installed, nothing
measured), and the amortised cost with ``every=50``. Rounds alternate plain and watched steps
so that the machine's drift hits both; medians of the per-round ratios are printed.

Peak memory: each case trains in a fresh process and reports how far its peak resident memory
(Linux: the peak is reset through /proc/self/clear_refs; on CUDA: peak allocated memory) rose
above where it stood before the first step.

Run:  python benchmarks/watch.py [--device cuda]

Targets: a measured step <= 1.3x a plain step; amortised over every=50 <= 1.01x; peak memory
<= 1.05x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

import resprobe

EVERY = 50


def cnn(device: str) -> tuple[torch.nn.Module, Callable[[torch.nn.Module], torch.Tensor]]:
    """The 24-block digits network at width 32, batch 128."""
    from resprobe.examples import DeepDigitsNet

    torch.manual_seed(0)
    model = DeepDigitsNet(True, width=32).to(device)
    x = torch.randn(128, 1, 8, 8, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    return model, lambda m: F.cross_entropy(m(x), y)


def gpt(device: str) -> tuple[torch.nn.Module, Callable[[torch.nn.Module], torch.Tensor]]:
    """GPT-2 from a config (6 layers, width 256), 8 sequences of 128 tokens, next-token loss."""
    import transformers as tf

    torch.manual_seed(0)
    config = tf.GPT2Config(n_layer=6, n_embd=256, n_head=8, vocab_size=4000, n_positions=128)
    model = tf.GPT2LMHeadModel(config).to(device)
    ids = torch.randint(0, 4000, (8, 128), device=device)
    return model, lambda m: m(input_ids=ids, labels=ids).loss


MODELS = {"digits-cnn-24": cnn, "gpt2-6": gpt}


def trainer(model: torch.nn.Module, loss: Callable[[torch.nn.Module], torch.Tensor],
            watch: Any = None) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad()
        loss(model).backward()
        opt.step()
        if watch is not None:
            watch.step()

    return step


def timed(step: Callable[[], None], n: int, sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    for _ in range(n):
        step()
    sync()
    return (time.perf_counter() - start) / n


def speed(name: str, device: str, rounds: int = 7, n: int = 3) -> dict[str, float]:
    model, loss = MODELS[name](device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    plain = trainer(model, loss)
    for _ in range(3):
        plain()
    with tempfile.TemporaryDirectory() as log:
        measured = resprobe.watch(model, every=1, log_dir=log, tensorboard=False)
        measuring = trainer(model, loss, measured)
        measuring()  # the first measured step captures the graph once
        ratios, offs = [], []
        for _ in range(rounds):
            base = timed(plain, n, sync)
            ratios.append(timed(measuring, n, sync) / base)
        measured.close()
        off_watch = resprobe.watch(model, every=10**9, start=1, tensorboard=False)
        off = trainer(model, loss, off_watch)
        for _ in range(rounds):
            base = timed(plain, n, sync)
            offs.append(timed(off, n, sync) / base)
        off_watch.close()
    r, o = statistics.median(ratios), statistics.median(offs)
    return {"measured": r, "off_step": o, "amortised": (r + (EVERY - 1) * o) / EVERY}


def peak(name: str, device: str, watched: bool, iterative: bool = False) -> int:
    """Peak memory of 3 training steps (every one measured when ``watched``) above where it
    stood before them, after a first step (which captures the graph once when watched)."""
    model, loss = MODELS[name](device)
    w = resprobe.watch(model, every=1, tensorboard=False, iterative=iterative) if watched else None
    step = trainer(model, loss, w)
    step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        for _ in range(3):
            step()
        return int(torch.cuda.max_memory_allocated() - before)
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # Linux: reset the peak resident size to now
        f.write("5")
    for _ in range(3):
        step()
    return _status("VmHWM") - before


def _status(field: str) -> int:
    """A size from /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory(name: str, device: str) -> tuple[float, float]:
    """Peak memory of measured steps over plain ones: by default, and with ``iterative=True``."""

    def run(*flags: str) -> int:
        # glibc: every large block mapped on its own and returned when freed, so that the
        # resident peak follows the tensors alive rather than the allocator's cache
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        out = subprocess.run([sys.executable, __file__, "--peak", name, "--device", device, *flags],
                             capture_output=True, text=True, check=True, env=env)
        return int(json.loads(out.stdout.strip().splitlines()[-1]))

    plain = run()
    if plain <= 0:
        return float("nan"), float("nan")
    return run("--watched") / plain, run("--watched", "--iterative") / plain


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--peak", metavar="MODEL")
    parser.add_argument("--watched", action="store_true")
    parser.add_argument("--iterative", action="store_true")
    args = parser.parse_args()
    if args.peak:
        print(json.dumps(peak(args.peak, args.device, args.watched, args.iterative)))
        return
    if args.device == "cpu":
        torch.set_num_threads(1)  # steadier timings on a shared machine
    print(f"{'model':16} {'measured step':>14} {'off-step':>9} {'every=50':>9} {'peak memory':>12} "
          f"{'(iterative)':>12}")
    for name in MODELS:
        s = speed(name, args.device)
        m, mi = memory(name, args.device)
        print(f"{name:16} {s['measured']:13.2f}x {s['off_step']:8.3f}x {s['amortised']:8.3f}x {m:11.3f}x "
              f"{mi:11.3f}x")
    print("targets: measured <= 1.30x, every=50 <= 1.01x, peak memory <= 1.05x")


if __name__ == "__main__":
    main()
