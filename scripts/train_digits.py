"""Train the bundled example: DigitsResNet on scikit-learn's 8x8 digits.

Run:  python scripts/train_digits.py      (needs scikit-learn; about a minute on 2 cores)

Writes resprobe/data/digits_resnet.pt (a state_dict, loadable with weights_only=True) and
resprobe/data/digits_batch.pt (16 held-out images and labels, the example's inputs), and
prints the held-out accuracy.
"""

from __future__ import annotations

import pathlib

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from resprobe.examples import DigitsResNet

DATA = pathlib.Path(__file__).resolve().parents[1] / "resprobe" / "data"


def main(epochs: int = 40, seed: int = 0) -> None:
    torch.manual_seed(seed)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    test, train = order[:360], order[360:]
    model = DigitsResNet()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        model.train()
        for idx in train[torch.randperm(len(train))].split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    DATA.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), DATA / "digits_resnet.pt")
    torch.save({"images": x[test[:16]].clone(), "labels": y[test[:16]].clone(),
                "accuracy": torch.tensor(accuracy)}, DATA / "digits_batch.pt")
    print(f"held-out accuracy {accuracy:.4f} on {len(test)} images")


if __name__ == "__main__":
    main()
