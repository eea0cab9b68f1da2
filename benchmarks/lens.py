"""Cost of the readout lens, side by side in one run, as ratios to one plain forward pass:
resprobe's lens (one taped forward pass per batch, then the model's tail replayed once per block,
with KL, agreement, entropy and loss per block) beside the hand-written logit lens it equals
(hooks take the states in one forward pass, then ``lm_head(ln_f(h))`` per block, with the same
statistics), and beside running the model once per block.

Run:  python benchmarks/lens.py

The target is about one tail per block: resprobe's lens within ~2x of the hand-written one.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

import resprobe
from resprobe.lens import lens


def median_time(fn: Callable[[], Any], reps: int = 5) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import transformers as tf

    torch.manual_seed(0)
    config = tf.GPT2Config(n_layer=12, n_embd=256, n_head=8, vocab_size=8000, n_positions=256)
    model = tf.GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 8000, (8, 256), generator=torch.Generator().manual_seed(0))
    inputs = resprobe.Inputs((), {"input_ids": ids})
    graph = resprobe.capture(model, inputs)
    blocks = resprobe.find_blocks(graph)
    data = resprobe.example_data(inputs)
    n = sum(b.is_residual for b in blocks)

    def plain_forward() -> None:
        with torch.no_grad():
            model(input_ids=ids)

    def by_hand() -> None:
        """The logit lens written for GPT-2: states from hooks, then the head on each state."""
        with torch.no_grad():
            out = model(input_ids=ids, output_hidden_states=True)
            logp = torch.log_softmax(out.logits, -1)
            p, top = logp.exp(), out.logits.argmax(-1)
            for k in range(n):  # GPT-2 gives the states after its layers; reuse them for both blocks
                h = out.hidden_states[min(k // 2 + 1, len(out.hidden_states) - 1)]
                logq = torch.log_softmax(model.lm_head(model.transformer.ln_f(h)), -1)
                float((p * (logp - logq)).sum(-1).mean()), float((logq.argmax(-1) == top).float().mean())
                float((logq.exp() * logq).sum(-1).mean())
                float(torch.nn.functional.cross_entropy(logq[:, :-1].flatten(0, 1), ids[:, 1:].flatten()))

    def per_block() -> None:
        with torch.no_grad():
            for _ in range(n):
                model(input_ids=ids)

    fwd = median_time(plain_forward)
    ours = median_time(lambda: lens(model, graph, blocks, data), reps=3)
    hand = median_time(by_hand, reps=3)
    brute = median_time(per_block, reps=1)
    print(f"GPT-2 (12 layers, width 256, vocabulary 8000), {n} blocks, batch 8 x 256 tokens, CPU; "
          f"plain forward {fwd * 1e3:.0f} ms")
    print(f"resprobe lens:      {ours / fwd:6.2f} forward passes (one taped pass + {n} tails)")
    print(f"hand-written lens:  {hand / fwd:6.2f} forward passes (one pass with hooks + {n} heads)")
    print(f"one pass per block: {brute / fwd:6.2f} forward passes")
    print(f"resprobe / hand-written: {ours / hand:.2f}x (target ~1-2x)")


if __name__ == "__main__":
    main()
