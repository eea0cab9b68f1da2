"""Measurement overhead: one instrumented forward + backward with every statistic of the
refinement and gradients probes, against a plain forward + backward (same objective, same
parameter gradients), side by side in one process.

Run:  python benchmarks/measure.py            (all models; a few minutes on 2 cores)
      python benchmarks/measure.py --quick    (fewer repetitions)
      python benchmarks/measure.py --device cuda

The instrumented side is ``resprobe.measure`` on one batch (the graph captured once
beforehand, as ``resprobe analyze`` does): gates at every join and block input, the
statistics as running sums on the device, and the single copy to the host at the end. The
plain side runs the model, takes the same objective, and computes the same parameter
gradients with ``torch.autograd.grad``. Each pair alternates; the median of --reps runs is
reported. ``batches=4`` measures four batches per call, where the fixed costs amortise (such
as T5's: it records a ``.contiguous()`` only with autograd on, so its graph is captured again
with autograd on, once per measurement).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import resprobe

sys.path.insert(0, str(Path(__file__).parent))
from capture import TRANSFORMERS, VISION  # noqa: E402
from capture import build as build_small  # noqa: E402

# DenseNet has concat skips only: no residual add, nothing to measure.
MEASURED = [m for m in VISION if m != "densenet121"]
# The same families at a working width: 6 layers, width 256, a batch of 4 sequences of 128.
WIDE = ["gpt2-256", "bert-256", "llama-256"]


def build(name: str) -> tuple[torch.nn.Module, Any]:
    if name not in WIDE:
        return build_small(name)
    import transformers as tf

    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (4, 128))
    if name == "gpt2-256":
        model = tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=6, n_embd=256, n_head=4, vocab_size=1000,
                                                 bos_token_id=0, eos_token_id=0))
    elif name == "bert-256":
        model = tf.BertModel(tf.BertConfig(num_hidden_layers=6, hidden_size=256, num_attention_heads=4,
                                           intermediate_size=1024, vocab_size=1000))
    else:
        model = tf.LlamaForCausalLM(tf.LlamaConfig(num_hidden_layers=6, hidden_size=256,
                                                   num_attention_heads=4,
                                                   num_key_value_heads=2, intermediate_size=688,
                                                   vocab_size=1000))
    return model.eval(), {"input_ids": ids}


def plain_step(model: torch.nn.Module, inputs: resprobe.Inputs, objective: resprobe.Objective,
               params: list[torch.Tensor]) -> None:
    out = model(*inputs.args, **inputs.kwargs)
    loss = objective.losses(out, inputs, None).sum()
    torch.autograd.grad(loss, params, allow_unused=True)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def ratio(name: str, reps: int, device: str, batches: int) -> tuple[float, float, float]:
    model, raw = build(name)
    model = model.to(device)
    inputs = resprobe.Inputs.of(raw).to(device)
    graph = resprobe.capture(model, inputs)
    blocks = resprobe.find_blocks(graph)
    many = resprobe.Data("example", "benchmark", batches, 1, lambda: iter([(inputs, None)] * batches))
    with torch.no_grad():
        out = model(*inputs.args, **inputs.kwargs)
    objective = resprobe.choose_objective(None, out, inputs, None, model)
    params = [p for p in model.parameters() if p.requires_grad]

    def plain() -> None:
        for _ in range(batches):
            plain_step(model, inputs, objective, params)

    def measured() -> None:
        resprobe.measure(model, graph, blocks, many, objective=objective.name)

    for _ in range(2):
        plain()
        measured()
    a, b = [], []
    for _ in range(reps):
        a.append(timed(plain, device))
        b.append(timed(measured, device))
    base, inst = statistics.median(a), statistics.median(b)
    return base, inst, inst / base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="*", default=MEASURED + WIDE + TRANSFORMERS)
    args = parser.parse_args()
    reps = 3 if args.quick else 7
    print(f"torch {torch.__version__}, device {args.device}, median of {reps} alternating runs")
    for batches in (1, 4):
        ratios = []
        print(f"\nbatches per call: {batches}")
        print(f"{'model':22s} {'plain fwd+bwd s':>15s} {'measure s':>10s} {'ratio':>7s}")
        for name in args.models:
            base, inst, r = ratio(name, reps, args.device, batches)
            ratios.append(r)
            print(f"{name:22s} {base:15.4f} {inst:10.4f} {r:6.2f}x", flush=True)
        print(f"{'median':22s} {'':15s} {'':10s} {statistics.median(ratios):6.2f}x   (target <= 1.3x)")
        tiny = [r for n, r in zip(args.models, ratios) if n not in TRANSFORMERS]
        if tiny and len(tiny) < len(ratios):
            print(f"{'median without tiny':22s} {'':15s} {'':10s} {statistics.median(tiny):6.2f}x   "
                  "(the tiny transformers take 3-5 ms a step: per-op Python cost dominates)")


if __name__ == "__main__":
    main()
