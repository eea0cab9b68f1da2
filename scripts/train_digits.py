"""Train the bundled example: DigitsResNet on scikit-learn's 8x8 digits.

Run:  python scripts/train_digits.py      (needs scikit-learn; about a minute on 2 cores)

Writes resprobe/data/digits_resnet.pt (a state_dict, loadable with weights_only=True) and
resprobe/data/digits_batch.pt (16 held-out images and labels, the example's inputs), and
prints the held-out accuracy.
"""

from __future__ import annotations

import pathlib

import torch
from _digits import fit, split

from resprobe.examples import DigitsResNet

DATA = pathlib.Path(__file__).resolve().parents[1] / "resprobe" / "data"


def main(epochs: int = 40, seed: int = 0) -> None:
    x, y, test, train = split(seed)
    model, accuracy = fit(DigitsResNet, x, y, train, test, epochs, seed)
    DATA.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), DATA / "digits_resnet.pt")
    torch.save({"images": x[test[:16]].clone(), "labels": y[test[:16]].clone(),
                "accuracy": torch.tensor(accuracy)}, DATA / "digits_batch.pt")
    print(f"held-out accuracy {accuracy:.4f} on {len(test)} images")


if __name__ == "__main__":
    main()
