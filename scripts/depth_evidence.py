"""Print the effective-depth evidence of docs/effective-depth.md from resprobe's own output:
the 24-block residual and plain digits networks, on the 360 held-out digits.

Run:  python scripts/depth_evidence.py      (about a minute on 2 cores)
"""

from __future__ import annotations

import resprobe
from resprobe.examples import digits_deep_plain, digits_deep_resnet, digits_test_path


def analyse(loaded: resprobe.Loaded, probes: tuple[str, ...], settings: resprobe.Settings) -> resprobe.Report:
    assert loaded.inputs is not None
    data = resprobe.load_data(digits_test_path(), loaded.inputs, batch_size=120)
    return resprobe.analyze(loaded, probes=probes, data=data, settings=settings)


def main() -> None:
    residual = analyse(digits_deep_resnet(), ("gradients", "depth", "lesion"),
                       resprobe.Settings(validate=True, sample=8))
    depth = residual.result("depth")
    lesions = residual.result("lesion")
    assert depth is not None and lesions is not None
    s = depth.summary["streams"][0]
    est, exact, sampled = s["estimate_magnitude"], s["exact"], s["sampled"]
    print(f"residual: {s['nominal']} blocks, {depth.summary['parametric_depth']} parametric layers on the "
          f"longest path")
    print(f"estimate (magnitude): effective depth {est['mean']:.2f}, 90% window {est['window']}, "
          f"{est['path_share']:.4%} of paths; ratio {s['effective_ratio']:.3f}")
    print(f"estimate (net): mean {s['estimate_net']['mean']:.2f}, window {s['estimate_net']['window']}")
    print(f"exact (net): mean {exact['mean']:.2f}, window {exact['window']}, check {exact['check']:.1e}")
    print(f"sampled (magnitude): mean {sampled['mean']:.2f}, window {sampled['window']}")
    print(f"validation: {s['validation']}")
    print(f"objective: {residual.objective}; data: {residual.data['description']}")
    base = lesions.summary["curve"]
    print("\n| block | skip | accuracy after deleting it | Δ loss | KL |")
    print("| --- | --- | --- | --- | --- |")
    kinds = {b["name"]: b["skip"] for b in residual.blocks}
    for name, v in lesions.blocks.items():
        print(f"| {name} | {kinds[name]} | {v['accuracy']:.3f} | {v['loss_change']:+.3f} | {v['kl']:.3f} |")
    first = next(iter(lesions.blocks.values()))
    print(f"\nresidual, nothing deleted: accuracy {first['base_accuracy']:.3f}")
    print("\n| blocks deleted at random | accuracy (mean ± std over draws) |")
    print("| --- | --- |")
    for row in base:
        print(f"| {row['deleted']} | {row['accuracy']:.3f} ± {row['accuracy_std']:.3f} |")
    plain_loaded = digits_deep_plain()
    names = [f"layers.{i}" for i in range(24) if i not in (0, 8, 16)]  # the blocks that keep their shape
    plain = analyse(plain_loaded, ("verify", "lesion"), resprobe.Settings(lesion_modules=tuple(names)))
    result = plain.result("lesion")
    assert result is not None
    print(f"\nplain: {len(plain.blocks)} residual blocks found; {plain_loaded.description}")
    print("\n| plain block deleted | accuracy | Δ loss | KL |")
    print("| --- | --- | --- | --- |")
    for name, v in result.summary["modules"].items():
        print(f"| {name} | {v['accuracy']:.3f} | {v['loss_change']:+.3f} | {v['kl']:.3f} |")
    base_plain = next(iter(result.summary["modules"].values()))["base_accuracy"]
    print(f"\nplain, nothing deleted: accuracy {base_plain:.3f}")


if __name__ == "__main__":
    main()
