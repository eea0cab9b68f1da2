"""What the training scripts share: scikit-learn's digits, one fixed split, one training recipe."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn


def split(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (N, 1, 8, 8) scaled to [0, 1], labels, and 360 held-out then training indices."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return x, y, order[:360], order[360:]


def fit(make: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, train: torch.Tensor,
        test: torch.Tensor, epochs: int = 40, seed: int = 0) -> tuple[nn.Module, float]:
    """Seed, build, train (AdamW, cosine schedule); the model in eval mode, its held-out accuracy."""
    torch.manual_seed(seed)
    model = make()
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
    return model, accuracy
