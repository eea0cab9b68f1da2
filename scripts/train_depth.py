"""Train the effective-depth evidence: a 24-block residual network and the plain network of the
same depth (the same blocks without skips) on scikit-learn's 8x8 digits.

Run:  python scripts/train_depth.py      (needs scikit-learn; a few minutes on 2 cores)

Writes resprobe/data/digits_deep_resnet.pt and digits_deep_plain.pt (float16 state_dicts and
the held-out accuracy, loadable with weights_only=True) and resprobe/data/digits_test.pt (the
360 held-out images and labels, the same split as scripts/train_digits.py).
"""

from __future__ import annotations

import pathlib

import torch
from _digits import fit, split

from resprobe.examples import DeepDigitsNet

DATA = pathlib.Path(__file__).resolve().parents[1] / "resprobe" / "data"


def main(epochs: int = 40, seed: int = 0) -> None:
    x, y, test, rest = split(seed)
    DATA.mkdir(parents=True, exist_ok=True)
    for residual, name in ((True, "digits_deep_resnet"), (False, "digits_deep_plain")):
        def make(residual: bool = residual) -> DeepDigitsNet:
            return DeepDigitsNet(residual)

        model, accuracy = fit(make, x, y, rest, test, epochs, seed)
        state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
        torch.save({"state": state, "accuracy": torch.tensor(accuracy)}, DATA / f"{name}.pt")
        print(f"{name}: held-out accuracy {accuracy:.4f} on {len(test)} images", flush=True)
    torch.save({"inputs": x[test].clone(), "targets": y[test].clone()}, DATA / "digits_test.pt")


if __name__ == "__main__":
    main()
