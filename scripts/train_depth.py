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
import torch.nn.functional as F
from sklearn.datasets import load_digits

from resprobe.examples import DeepDigitsNet

DATA = pathlib.Path(__file__).resolve().parents[1] / "resprobe" / "data"


def train(residual: bool, x: torch.Tensor, y: torch.Tensor, train_idx: torch.Tensor, test_idx: torch.Tensor,
          epochs: int, seed: int) -> tuple[DeepDigitsNet, float]:
    torch.manual_seed(seed)
    model = DeepDigitsNet(residual)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        model.train()
        for idx in train_idx[torch.randperm(len(train_idx))].split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x[test_idx]).argmax(1) == y[test_idx]).float().mean().item()
    return model, accuracy


def main(epochs: int = 40, seed: int = 0) -> None:
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    test, rest = order[:360], order[360:]
    DATA.mkdir(parents=True, exist_ok=True)
    for residual, name in ((True, "digits_deep_resnet"), (False, "digits_deep_plain")):
        model, accuracy = train(residual, x, y, rest, test, epochs, seed)
        state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
        torch.save({"state": state, "accuracy": torch.tensor(accuracy)}, DATA / f"{name}.pt")
        print(f"{name}: held-out accuracy {accuracy:.4f} on {len(test)} images", flush=True)
    torch.save({"inputs": x[test].clone(), "targets": y[test].clone()}, DATA / "digits_test.pt")


if __name__ == "__main__":
    main()
