"""Layout time of the refinement view: 12-, 48- and 96-layer transformers and a ResNet-152,
folded and unfolded, with the layout program resprobe finds (dot, else graphviz-pure).

Run:  python benchmarks/render.py        (target: folded 96-layer transformer <= 2 s)

Each model is captured on the meta device (structure only: no weights, nothing measured), so
the diagram has every block but no numbers; layout time depends on the structure alone.
"""

from __future__ import annotations

import time
from typing import Any

import torch

import resprobe
from resprobe.render.dot import render, renderer
from resprobe.render.refinement import refinement_dot


def transformer(layers: int) -> tuple[torch.nn.Module, Any]:
    import transformers as tf

    with torch.device("meta"):
        config = tf.GPT2Config(n_layer=layers, n_embd=64, n_head=4, vocab_size=100, bos_token_id=0,
                               eos_token_id=0)
        model = tf.GPT2Model(config)
    return model, {"input_ids": torch.zeros(1, 16, dtype=torch.long, device="meta")}


def resnet152() -> tuple[torch.nn.Module, Any]:
    import torchvision

    with torch.device("meta"):
        model = torchvision.models.resnet152()
    return model, torch.zeros(1, 3, 224, 224, device="meta")


def main() -> None:
    print(f"layout program: {renderer()}")
    print(f"{'model':24s} {'blocks':>6s} {'unfolded s':>11s} {'folded s':>9s}")
    builds = [(f"GPT-2, {n} layers", lambda n=n: transformer(n)) for n in (12, 48, 96)]
    builds.append(("ResNet-152", resnet152))
    for name, build in builds:
        model, inputs = build()
        report = resprobe.analyze(resprobe.Loaded(model, resprobe.Inputs.of(inputs)), probes=())
        times = []
        for fold in (False, True):
            dot = refinement_dot(report, fold=fold)
            start = time.perf_counter()
            render(dot, "svg", timeout=120)
            times.append(time.perf_counter() - start)
        print(f"{name:24s} {len(report.blocks):6d} {times[0]:11.2f} {times[1]:9.2f}", flush=True)


if __name__ == "__main__":
    main()
