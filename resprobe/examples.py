"""The bundled examples: residual networks trained on scikit-learn's 8x8 digits (CNNs and a
ViT) and a small byte-level GPT trained on the Python standard library's own sources."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .inputs import Inputs
from .load import Loaded

__all__ = ["ByteTokenizer", "DeepDigitsNet", "DigitsResNet", "DigitsViT", "SmallLM", "digits_deep_plain",
           "digits_deep_resnet", "digits_resnet", "digits_test_path", "digits_vit", "digits_vit_random",
           "small_lm", "small_lm_random"]


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


class _Attention(nn.Module):
    """Multi-head self-attention (``scaled_dot_product_attention``), causal or not."""

    def __init__(self, width: int, heads: int, causal: bool):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))  # type: ignore[no-any-return]


class _PreNormBlock(nn.Module):
    """A pre-norm transformer layer: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, width: int, heads: int, causal: bool):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = _Attention(width, heads, causal)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))  # type: ignore[no-any-return]


def _gpt_init(model: nn.Module, layers: int) -> None:
    """GPT-2's initialisation: N(0, 0.02) weights, zero biases, residual projections scaled down
    by sqrt(2 * layers); LayerNorms as torch makes them."""
    for name, p in model.named_parameters():
        if ".ln" in name or name.startswith(("norm.", "ln")):
            continue
        if p.dim() == 1:
            nn.init.zeros_(p)
        else:
            std = 0.02 / (2 * layers) ** 0.5 if name.endswith(("attn.proj.weight", "mlp.2.weight")) else 0.02
            nn.init.normal_(p, std=std)


class SmallLM(nn.Module):
    """A pre-norm GPT over bytes: token + learned position embeddings, ``layers`` blocks of
    attention and MLP (each ``x + f(ln(x))``), a final LayerNorm and an untied linear head.
    ``input_ids`` ``[batch, seq]`` (byte values, seq <= ``context``) -> logits ``[batch, seq, 256]``.
    ``attention_mask`` is accepted for tokenized text and not needed: padding is on the right
    and attention is causal, so no real byte ever sees a pad."""

    def __init__(self, layers: int = 4, width: int = 128, heads: int = 4, context: int = 128,
                 vocab: int = 256):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(_PreNormBlock(width, heads, causal=True) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        _gpt_init(self, layers)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.embed(input_ids) + self.pos(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))  # type: ignore[no-any-return]


class ByteTokenizer:
    """Text -> UTF-8 byte ids, for ``--data`` text files: called like a Hugging Face tokenizer
    (``tokenizer(lines, padding=True, truncation=True, max_length=128, return_tensors="pt")``),
    it returns ``input_ids`` and ``attention_mask``, padded on the right with ``pad_id``."""

    pad_id = 0  # NUL: never in text

    def __call__(self, text: str | Sequence[str], padding: bool | str = False, truncation: bool = False,
                 max_length: int | None = None, return_tensors: str | None = None,
                 **_: Any) -> dict[str, Any]:
        lines = [text] if isinstance(text, str) else list(text)
        ids = [list(line.encode("utf-8")) for line in lines]
        if truncation and max_length is not None:
            ids = [i[:max_length] for i in ids]
        if padding or return_tensors == "pt":
            n = max((len(i) for i in ids), default=0)
            masks = [[1] * len(i) + [0] * (n - len(i)) for i in ids]
            ids = [i + [self.pad_id] * (n - len(i)) for i in ids]
        else:
            masks = [[1] * len(i) for i in ids]
        if return_tensors == "pt":
            return {"input_ids": torch.tensor(ids, dtype=torch.long),
                    "attention_mask": torch.tensor(masks, dtype=torch.long)}
        return {"input_ids": ids, "attention_mask": masks}

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """Byte ids back to text (invalid UTF-8 replaced)."""
        values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        return bytes(int(i) for i in values).decode("utf-8", errors="replace")


def _small_lm_batch() -> dict[str, Any]:
    with (files("resprobe") / "data" / "small_lm_batch.pt").open("rb") as f:
        batch: dict[str, Any] = torch.load(f, weights_only=True)
    return batch


def small_lm() -> Loaded:
    """A 4-layer byte-level GPT trained on the Python standard library's sources
    (``scripts/train_lm.py``) and 8 held-out sequences of 128 bytes as its inputs."""
    with (files("resprobe") / "data" / "small_lm.pt").open("rb") as f:
        saved = torch.load(f, weights_only=True)
    model = SmallLM()
    model.load_state_dict({k: v.float() for k, v in saved["state"].items()})
    batch = _small_lm_batch()
    loss, unigram = float(saved["loss"]), float(saved["unigram"])
    return Loaded(
        model.eval(), Inputs((batch["input_ids"],)), weights="trained",
        description=f"SmallLM, a 4-layer byte-level GPT trained on the Python {saved['python']} standard "
                    f"library's sources (held-out {loss:.3f} nats/byte, {loss / _LN2:.2f} bits/byte; "
                    f"unigram {unigram / _LN2:.2f} bits/byte)",
        inputs_description="8 held-out sequences of 128 bytes of Python source",
        tokenizer=ByteTokenizer(),
    )


def small_lm_random() -> Loaded:
    """``SmallLM`` freshly initialised (seeded by ``load``), on the same held-out bytes."""
    return Loaded(
        SmallLM().eval(), Inputs((_small_lm_batch()["input_ids"],)), weights="random",
        description="SmallLM, a 4-layer byte-level GPT, randomly initialised (the untrained twin of "
                    "small_lm)",
        inputs_description="8 held-out sequences of 128 bytes of Python source",
        tokenizer=ByteTokenizer(),
    )


_LN2 = 0.6931471805599453


class DigitsViT(nn.Module):
    """A small vision transformer for 1x8x8 digits: 2x2 patches (16 of them) and a class
    token with learned position embeddings, pre-norm blocks, a final LayerNorm, and a linear
    head on the class token."""

    def __init__(self, layers: int = 4, width: int = 64, heads: int = 4, patch: int = 2, size: int = 8,
                 classes: int = 10):
        super().__init__()
        self.patch = nn.Conv2d(1, width, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.randn(1, (size // patch) ** 2 + 1, width) * 0.02)
        self.blocks = nn.ModuleList(_PreNormBlock(width, heads, causal=False) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])  # type: ignore[no-any-return]


def _digits_test() -> dict[str, Tensor]:
    with (files("resprobe") / "data" / "digits_test.pt").open("rb") as f:
        test: dict[str, Tensor] = torch.load(f, weights_only=True)
    return test


def digits_vit() -> Loaded:
    """A 4-block ViT trained on digits (``scripts/train_digits_vit.py``), 32 held-out images."""
    with (files("resprobe") / "data" / "digits_vit.pt").open("rb") as f:
        saved = torch.load(f, weights_only=True)
    model = DigitsViT()
    model.load_state_dict({k: v.float() for k, v in saved["state"].items()})
    accuracy = float(saved["accuracy"])
    return Loaded(
        model.eval(), Inputs((_digits_test()["inputs"][:32],)), weights="trained",
        description=f"DigitsViT, a 4-block vision transformer (2x2 patches, class token) trained on "
                    f"scikit-learn's digits ({accuracy:.1%} held-out accuracy)",
        inputs_description="32 held-out 8x8 digit images",
    )


def digits_vit_random() -> Loaded:
    """``DigitsViT`` freshly initialised (seeded by ``load``), on the same held-out images."""
    return Loaded(
        DigitsViT().eval(), Inputs((_digits_test()["inputs"][:32],)), weights="random",
        description="DigitsViT, a 4-block vision transformer, randomly initialised (the untrained "
                    "twin of digits_vit)",
        inputs_description="32 held-out 8x8 digit images",
    )
