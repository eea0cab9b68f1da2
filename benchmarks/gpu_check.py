"""One short check on a CUDA machine: measurement overhead on a few zoo models, the
no-synchronisation guarantee, autocast, and a model split across devices (the CPU and a GPU;
two GPUs when there are two). Prints everything; takes about a minute.

Run:  python benchmarks/gpu_check.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

import resprobe

sys.path.insert(0, str(Path(__file__).parent))
from measure import build, ratio  # noqa: E402

MODELS = ["resnet50", "convnext_tiny", "vit_b_16", "gpt2-256", "bert-256", "llama-256"]


def no_sync_check() -> str:
    from resprobe.capture import ModuleTree
    from resprobe.measure import Settings, _Run

    model, raw = build("resnet50")
    model = model.cuda()
    inputs = resprobe.Inputs.of(raw).to("cuda")
    graph = resprobe.capture(model, inputs)
    run = _Run(model, ModuleTree(model), graph, resprobe.find_blocks(graph), None, Settings())
    run.batch(inputs, None)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        run.batch(inputs, None)
    except RuntimeError as err:
        return f"FAILED: {str(err).splitlines()[0]}"
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return "ok (no host synchronisation inside the instrumented pass)"


def autocast_check() -> str:
    model, raw = build("gpt2-256")
    model = model.cuda()
    inputs = resprobe.Inputs.of(raw).to("cuda")
    graph = resprobe.capture(model, inputs)
    blocks = resprobe.find_blocks(graph)
    start = time.perf_counter()
    m = resprobe.measure(model, graph, blocks, resprobe.example_data(inputs),
                         settings=resprobe.Settings(dtype="bfloat16"))
    ratios = [v["update_ratio"] for v in m.blocks.values()]
    return f"bfloat16 autocast: {len(ratios)} blocks, update ratio median {statistics.median(ratios):.3f}, " \
           f"{time.perf_counter() - start:.2f} s"


def split_check() -> str:
    """The digits network with its layers on two devices, against the same network on the CPU:
    the largest relative difference over every number of every block."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from test_cuda import _Split

    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    probes = ("verify", "refinement", "gradients", "lesion")
    whole = resprobe.analyze(_Split("cpu", "cpu"), x, probes=probes)
    pairs = [("cpu", "cuda:0")] + ([("cuda:0", "cuda:1")] if torch.cuda.device_count() > 1 else [])
    out = []
    for first, second in pairs:
        split = resprobe.analyze(_Split(first, second), x.to(first), probes=probes)
        kinds = ("refinement", "gradients", "lesion")
        worst = max((abs(b.metrics[p][k] - v) / max(abs(v), 1e-6)
                     for a, b in zip(whole.blocks, split.blocks) for p in kinds
                     for k, v in a.metrics[p].items() if isinstance(v, float)), default=0.0)
        out.append(f"{first} + {second}: {len(split.blocks)} blocks, largest relative difference {worst:.1e}")
    return "; ".join(out)


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("no CUDA device here")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    print("sync check:", no_sync_check(), flush=True)
    print(autocast_check(), flush=True)
    print("split across devices:", split_check(), flush=True)
    print(f"{'model':16s} {'plain fwd+bwd s':>15s} {'measure s':>10s} {'ratio':>7s}")
    got = []
    for name in MODELS:
        base, inst, r = ratio(name, 5, "cuda", 4)
        got.append(r)
        print(f"{name:16s} {base:15.4f} {inst:10.4f} {r:6.2f}x", flush=True)
    print(f"{'median':16s} {'':15s} {'':10s} {statistics.median(got):6.2f}x   (target <= 1.3x)")


if __name__ == "__main__":
    main()
