"""Capture overhead: time and peak memory of capture() against a plain no_grad forward.

Run:  python benchmarks/capture.py            (all models; a few minutes on 2 cores)
      python benchmarks/capture.py --quick    (fewer repetitions)

Time is measured side by side in one process (forward and capture alternate, median of
--reps runs each). Peak memory is measured in a fresh process per model and mode (Linux: the
peak-RSS counter is reset just before the run), so both start from the same state. The last
line measures capture + detection of a LLaMA-2-70B-sized config on the meta device.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

import resprobe

VISION = ["resnet50", "convnext_tiny", "vit_b_16", "swin_t", "mobilenet_v3_small",
          "efficientnet_b0", "regnet_y_400mf", "densenet121"]
TRANSFORMERS = ["gpt2", "bert", "llama", "t5"]


def build(name: str) -> tuple[torch.nn.Module, Any]:
    torch.manual_seed(0)
    if name in VISION:
        import torchvision

        return getattr(torchvision.models, name)(weights=None).eval(), torch.randn(1, 3, 224, 224)
    import transformers as tf

    ids = torch.randint(0, 100, (1, 32))
    if name == "gpt2":
        model = tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=4, n_embd=64, n_head=4, vocab_size=100,
                                                 bos_token_id=0, eos_token_id=0))
    elif name == "bert":
        model = tf.BertModel(tf.BertConfig(num_hidden_layers=4, hidden_size=64, num_attention_heads=4,
                                           intermediate_size=128, vocab_size=100))
    elif name == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(num_hidden_layers=4, hidden_size=64,
                                                   num_attention_heads=4, num_key_value_heads=2,
                                                   intermediate_size=128, vocab_size=100))
    else:
        model = tf.T5ForConditionalGeneration(tf.T5Config(num_layers=4, d_model=64, d_ff=128,
                                                          num_heads=4, d_kv=16, vocab_size=100))
        return model.eval(), {"input_ids": ids, "decoder_input_ids": ids[:, :8]}
    return model.eval(), {"input_ids": ids}


def forward(model: torch.nn.Module, inputs: Any) -> None:
    inp = resprobe.Inputs.of(inputs)
    with torch.no_grad():
        model(*inp.args, **inp.kwargs)


def capture(model: torch.nn.Module, inputs: Any) -> None:
    resprobe.capture(model, inputs)


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_ratio(name: str, reps: int) -> tuple[float, float, float]:
    model, inputs = build(name)
    for _ in range(2):
        forward(model, inputs)
        capture(model, inputs)
    plain, recorded = [], []
    for _ in range(reps):
        plain.append(timed(lambda: forward(model, inputs)))
        recorded.append(timed(lambda: capture(model, inputs)))
    p, r = statistics.median(plain), statistics.median(recorded)
    return p, r, r / p


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_extra_mb(name: str, mode: str) -> float:
    """Run in a child process: peak RSS above the pre-run level for one run of ``mode``."""
    model, inputs = build(name)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS counter
    base = _rss_kb("VmRSS:")
    (forward if mode == "forward" else capture)(model, inputs)
    return (_rss_kb("VmHWM:") - base) / 1024


def memory_ratio(name: str) -> tuple[float, float, float]:
    def child(mode: str) -> float:
        out = subprocess.run([sys.executable, __file__, "--child", name, mode],
                             capture_output=True, text=True, check=True).stdout
        return float(json.loads(out.strip().splitlines()[-1]))

    f, c = child("forward"), child("capture")
    return f, c, c / f if f > 0 else float("nan")


def meta_70b() -> tuple[float, float, int]:
    import transformers as tf

    config = tf.LlamaConfig(vocab_size=32000, hidden_size=8192, intermediate_size=28672,
                            num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8)
    with torch.device("meta"):
        model = tf.LlamaForCausalLM(config)
    gc.collect()
    base = _rss_kb("VmRSS:")
    start = time.perf_counter()
    graph = resprobe.capture(model, {"input_ids": torch.zeros(1, 16, dtype=torch.long)})
    blocks = resprobe.find_blocks(graph)
    seconds = time.perf_counter() - start
    return seconds, (_rss_kb("VmRSS:") - base) / 1024, len(blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=11)
    parser.add_argument("--quick", action="store_true", help="3 repetitions")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(peak_extra_mb(*args.child)))
        return
    torch.set_num_threads(torch.get_num_threads())
    reps = 3 if args.quick else args.reps
    print(f"{'model':<20}{'forward ms':>11}{'capture ms':>11}{'time x':>8}"
          f"{'fwd MB':>9}{'cap MB':>9}{'mem x':>7}")
    groups: dict[str, list[tuple[float, float]]] = {"vision": [], "transformers": []}
    for group, names in (("vision", VISION), ("transformers", TRANSFORMERS)):
        for name in names:
            p, r, tx = time_ratio(name, reps)
            fm, cm, mx = memory_ratio(name)
            groups[group].append((tx, mx))
            print(f"{name:<20}{p * 1e3:>11.1f}{r * 1e3:>11.1f}{tx:>8.2f}{fm:>9.1f}{cm:>9.1f}{mx:>7.2f}",
                  flush=True)
    for group, rows in groups.items():
        print(f"median {group:<13} time x {statistics.median(t for t, _ in rows):.2f}   "
              f"memory x {statistics.median(m for _, m in rows):.2f}")
    seconds, mb, n = meta_70b()
    print(f"LLaMA-2-70B on meta: capture + detection {seconds:.2f} s, +{mb:.0f} MB RSS, {n} blocks")


if __name__ == "__main__":
    main()
