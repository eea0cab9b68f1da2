"""Print the readout-lens evidence of docs/lens.md from resprobe's own output: the trained
byte-level LM and the digits ViT and ResNet beside their random-init twins.

Run:  python scripts/lens_evidence.py      (under a minute on 2 cores)
"""

from __future__ import annotations

import math

import resprobe
from resprobe.examples import digits_test_path

# source, classes (the size of the prediction the head makes), data
MODELS = (("small_lm", 256), ("small_lm_random", 256), ("digits_vit", 10), ("digits_vit_random", 10),
          ("digits_deep_resnet", 10))


def lens_of(source: str) -> resprobe.Report:
    loaded = resprobe.load(f"resprobe.examples:{source}")
    assert loaded.inputs is not None
    data = (resprobe.load_data(digits_test_path(), loaded.inputs, batch_size=180)
            if source.startswith("digits") else None)
    return resprobe.analyze(loaded, probes=("lens",), data=data)


def rows(report: resprobe.Report, classes: int) -> list[tuple[str, float, float, float, float | None]]:
    """(block, KL, KL as a share of the final prediction's distance from uniform, top-1, loss)."""
    decoded = [b for b in report.blocks
               if b.metrics.lens is not None and b.metrics.lens.kl_to_final is not None]
    last = decoded[-1].metrics.lens
    assert last is not None and last.entropy is not None
    spread = math.log(classes) - last.entropy  # the mean KL(final ‖ uniform)
    out = []
    for b in decoded:
        m = b.metrics.lens
        assert m is not None and m.kl_to_final is not None and m.top1_agreement is not None
        out.append((b.name, m.kl_to_final, m.kl_to_final / spread, m.top1_agreement, m.loss))
    return out


def main() -> None:
    for source, classes in MODELS:
        report = lens_of(source)
        result = report.result("lens")
        assert result is not None
        stream = next(s for s in result.summary["streams"] if s.get("blocks"))
        print(f"\n{source} ({report.model.weights}): {result.summary['samples']} samples, objective "
              f"{result.summary['objective']['name']}; top-1 agreement reaches 90% at step "
              f"{stream['agreement_90_step']}")
        print("| block | KL to final (nats) | KL / KL(final ‖ uniform) | top-1 agreement | loss (nats) |")
        print("| --- | --- | --- | --- | --- |")
        for name, kl, share, agree, loss in rows(report, classes):
            shown = "–" if loss is None else f"{loss:.3f}"
            print(f"| {name} | {kl:.3f} | {share:.2f} | {agree:.3f} | {shown} |")


if __name__ == "__main__":
    main()
