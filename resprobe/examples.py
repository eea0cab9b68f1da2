"""The bundled example: a small residual network trained on scikit-learn's 8x8 digits."""

from __future__ import annotations

from importlib.resources import files

import torch
from torch import Tensor, nn

from .inputs import Inputs
from .load import Loaded

__all__ = ["DeepDigitsNet", "DigitsResNet", "digits_deep_plain", "digits_deep_resnet", "digits_resnet",
           "digits_test_path"]


class _Block(nn.Module):
    """A post-activation basic block ``relu(skip(x) + f(x))``; a 1x1 projection when shapes change."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        out = out + self.shortcut(x)
        return torch.relu(out)


class DigitsResNet(nn.Module):
    """A residual CNN for 1x8x8 digit images: stem, two stages of basic blocks, linear head."""

    def __init__(self, width: int = 16, blocks: tuple[int, ...] = (3, 3), classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        layers: list[nn.Module] = []
        cin = width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            for j in range(n):
                layers.append(_Block(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(cin, classes)

    def forward(self, x: Tensor) -> Tensor:
        features: Tensor = self.layers(self.stem(x))
        return self.head(features.mean(dim=(2, 3)))  # type: ignore[no-any-return]


def digits_resnet() -> Loaded:
    """The bundled example: a ``DigitsResNet`` trained on scikit-learn's digits
    (``scripts/train_digits.py``) and 16 held-out digit images as its inputs."""
    data = files("resprobe") / "data"
    with (data / "digits_resnet.pt").open("rb") as f:
        state = torch.load(f, weights_only=True)
    with (data / "digits_batch.pt").open("rb") as f:
        batch = torch.load(f, weights_only=True)
    model = DigitsResNet()
    model.load_state_dict(state)
    accuracy = float(batch["accuracy"])
    return Loaded(
        model.eval(), Inputs((batch["images"],)), weights="trained",
        description=f"DigitsResNet trained on scikit-learn's digits ({accuracy:.1%} held-out "
                    "accuracy); inputs: 16 held-out 8x8 digit images",
        inputs_description="16 held-out 8x8 digit images",
    )


class _DeepBlock(nn.Module):
    """``relu(skip(x) + f(x))`` when residual, else ``relu(f(x))``: the same layers either way."""

    def __init__(self, width: int, stride: int, residual: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.residual = residual
        self.shortcut: nn.Module = nn.Identity()
        if residual and stride != 1:
            self.shortcut = nn.Sequential(nn.Conv2d(width, width, 1, stride, bias=False),
                                          nn.BatchNorm2d(width))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + self.shortcut(x) if self.residual else out)


class DeepDigitsNet(nn.Module):
    """A deep CNN for 1x8x8 digits: stem, three stages of blocks (8x8, 4x4, 2x2), linear head.
    ``residual=False`` is the plain network of the same depth: the same blocks without skips."""

    def __init__(self, residual: bool = True, width: int = 16, stages: tuple[int, ...] = (8, 8, 8),
                 classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layers = nn.Sequential(*[_DeepBlock(width, 2 if (i > 0 and j == 0) else 1, residual)
                                      for i, n in enumerate(stages) for j in range(n)])
        self.head = nn.Linear(width, classes)

    def forward(self, x: Tensor) -> Tensor:
        features: Tensor = self.layers(self.stem(x))
        return self.head(features.mean(dim=(2, 3)))  # type: ignore[no-any-return]


def _deep(residual: bool) -> Loaded:
    name = "digits_deep_resnet" if residual else "digits_deep_plain"
    data = files("resprobe") / "data"
    with (data / f"{name}.pt").open("rb") as f:
        saved = torch.load(f, weights_only=True)
    model = DeepDigitsNet(residual)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in saved["state"].items()})
    with (data / "digits_test.pt").open("rb") as f:
        test = torch.load(f, weights_only=True)
    kind = "residual network" if residual else "plain network (the same blocks without skips)"
    accuracy = float(saved["accuracy"])
    return Loaded(
        model.eval(), Inputs((test["inputs"][:32],)), weights="trained",
        description=f"DeepDigitsNet, a 24-block {kind} trained on scikit-learn's digits "
                    f"({accuracy:.1%} held-out accuracy)",
        inputs_description="32 held-out 8x8 digit images",
    )


def digits_deep_resnet() -> Loaded:
    """A 24-block post-activation residual network trained on digits (``scripts/train_depth.py``)."""
    return _deep(True)


def digits_deep_plain() -> Loaded:
    """The plain network of the same depth (no skips), trained the same way."""
    return _deep(False)


def digits_test_path() -> str:
    """The held-out digits (360 images and labels) as a file for ``--data`` / ``load_data``."""
    return str(files("resprobe") / "data" / "digits_test.pt")
