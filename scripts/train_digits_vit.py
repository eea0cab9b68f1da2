"""Train the vision-transformer example: DigitsViT on scikit-learn's 8x8 digits.

Run:  python scripts/train_digits_vit.py      (needs scikit-learn; one CPU thread, 2 to 3 minutes)

The same split and recipe as scripts/train_digits.py (360 images held out; AdamW, cosine
schedule), for more epochs. Writes resprobe/data/digits_vit.pt (a float16 state_dict and the
held-out accuracy, loadable with weights_only=True) and prints the held-out accuracy. The
example's inputs are the held-out images of resprobe/data/digits_test.pt (scripts/train_depth.py).
"""

from __future__ import annotations

import pathlib
import time

import torch
from _digits import fit, split

from resprobe.examples import DigitsViT

DATA = pathlib.Path(__file__).resolve().parents[1] / "resprobe" / "data"


def main(epochs: int = 100, seed: int = 0) -> None:
    torch.set_num_threads(1)
    x, y, test, train = split(seed)
    start = time.time()
    model, _ = fit(DigitsViT, x, y, train, test, epochs, seed)
    trained = time.time() - start
    state = {k: v.half() for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.float() for k, v in state.items()})  # measure what ships
    with torch.no_grad():
        accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    DATA.mkdir(parents=True, exist_ok=True)
    torch.save({"state": state, "accuracy": torch.tensor(accuracy)}, DATA / "digits_vit.pt")
    print(f"trained in {trained:.0f}s; held-out accuracy {accuracy:.4f} on {len(test)} images")


if __name__ == "__main__":
    main()
