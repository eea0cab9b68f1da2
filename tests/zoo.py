"""Tiny edge-case models, each named by what it exercises, with its exact expected blocks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

D = 16


def mlp(d: int = D) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))


@dataclass
class Case:
    """A model, its inputs, and what find_blocks must say about it."""

    model: nn.Module
    inputs: Any
    skips: list[str]  # skip kind of every block, in join order ("identity"/"projection"/"concat")
    joins: list[str] | None = None  # join kind of every block, when the case is about it
    names: list[str] | None = None
    streams: list[int] = field(default_factory=list)  # blocks per stream


# --- residual structures -------------------------------------------------------------------

class IdentityMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f = mlp()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.f(x)


class ProjectionShortcut(nn.Module):
    """relu(bn(conv1x1_s2(x)) + bn(conv(relu(bn(conv_s2(x))))))."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(4, 8, 3, 2, 1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, 1, 1), nn.BatchNorm2d(8)
        self.down = nn.Sequential(nn.Conv2d(4, 8, 1, 2), nn.BatchNorm2d(8))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.down(x))


def rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def gelu_tanh(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Attention(nn.Module):
    """Single-head attention with RoPE and an additive mask: neither may look residual."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))

    def forward(self, x: Tensor, mask: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        q, k = self.q(x), self.k(x)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        scores = q @ k.transpose(-1, -2) / math.sqrt(D) + mask
        return self.o(scores.softmax(-1) @ self.v(x))


class GeluMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.proj = nn.Linear(D, 2 * D), nn.Linear(2 * D, D)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(gelu_tanh(self.fc(x)))


class PreNormLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(D), Attention()
        self.norm2, self.mlp = nn.LayerNorm(D), GeluMLP()

    def forward(self, x: Tensor, mask: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), mask, cos, sin)
        return x + self.mlp(self.norm2(x))


class PreNormTransformer(nn.Module):
    """Side inputs shared by every layer: attention mask, rotary cos/sin, position embeddings."""

    def __init__(self, layers: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, D)
        self.pos = nn.Parameter(torch.randn(1, 32, D) * 0.02)
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, D, 2).float() / D)))
        self.layers = nn.ModuleList(PreNormLayer() for _ in range(layers))
        self.norm = nn.LayerNorm(D)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        t = input_ids.shape[1]
        x = self.embed(input_ids) + self.pos[:, :t]
        freqs = torch.outer(torch.arange(t, dtype=torch.float32), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        mask = (1.0 - attention_mask[:, None, :].float()) * -1e9
        for layer in self.layers:
            x = layer(x, mask, cos, sin)
        return self.norm(x)


class PostNormLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn, self.norm1 = Attention(), nn.LayerNorm(D)
        self.mlp, self.norm2 = mlp(), nn.LayerNorm(D)

    def forward(self, x: Tensor, mask: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        x = self.norm1(x + self.attn(x, mask, cos, sin))
        return self.norm2(x + self.mlp(x))


class PostNormTransformer(nn.Module):
    def __init__(self, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, D)
        self.layers = nn.ModuleList(PostNormLayer() for _ in range(layers))

    def forward(self, input_ids: Tensor) -> Tensor:
        x = self.embed(input_ids)
        t = x.shape[1]
        cos, sin = torch.ones(t, D), torch.zeros(t, D)
        mask = torch.zeros(t, t)
        for layer in self.layers:
            x = layer(x, mask, cos, sin)
        return x


class PostActivationBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(8, 8, 3, 1, 1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, 1, 1), nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x  # in-place residual, as in torchvision
        return self.relu(out)  # in-place activation on the join output


class PostActivationResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 1, 1)
        self.blocks = nn.Sequential(*(PostActivationBlock() for _ in range(3)))

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.stem(x))


class Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm, self.a, self.b, self.out = nn.LayerNorm(D), mlp(), mlp(), nn.Linear(D, D)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        h = h + self.a(h)
        h = h + self.b(h)
        return self.out(h)


class NestedResiduals(nn.Module):
    """Two outer blocks x + g(x), each g holding an inner stream of two residual blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.g1, self.g2 = Inner(), Inner()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.g1(x)
        return x + self.g2(x)


class ReusedBlock(nn.Module):
    """One block module applied three times: three joins on one stream."""

    def __init__(self) -> None:
        super().__init__()
        self.block = mlp()

    def forward(self, x: Tensor) -> Tensor:
        for _ in range(3):
            x = x + self.block(x)
        return x


class ScaledJoins(nn.Module):
    """LayerScale x + γ·f(x) (vector γ), ReZero x + α·f(x) (scalar α), torch.add(..., alpha)."""

    def __init__(self) -> None:
        super().__init__()
        self.f1, self.f2, self.f3 = mlp(), mlp(), mlp()
        self.gamma = nn.Parameter(torch.full((D,), 1e-2))
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.gamma * self.f1(x)
        x = x + self.alpha * self.f2(x)
        return torch.add(x, self.f3(x), alpha=0.5)


class GatedJoin(nn.Module):
    """x + sigmoid(g(c)) ⊙ f(x), the gate computed from a conditioning input (adaLN-style)."""

    def __init__(self) -> None:
        super().__init__()
        self.f, self.g = mlp(), nn.Linear(D, D)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        return x + torch.sigmoid(self.g(c)) * self.f(x)


class InplaceJoins(nn.Module):
    """h.add_(f(h)) and h += f(h): in-place joins on a tensor made inside forward."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.f1, self.f2 = nn.Linear(D, D), mlp(), mlp()

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x)
        h.add_(self.f1(h))
        h += self.f2(h)
        return h


class DenseLayer(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(cin), nn.Conv2d(cin, 4, 3, 1, 1)

    def forward(self, feats: list[Tensor]) -> Tensor:
        return self.conv(F.relu(self.bn(torch.cat(feats, 1))))


class DenseBlock(nn.Module):
    """DenseNet: each layer reads the concat of all earlier features (three layers)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(4 + 4 * i) for i in range(3))

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(feats))
        return torch.cat(feats, 1)


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1))


class UNet3(nn.Module):
    """A 3-level U-Net whose skips are concatenations."""

    def __init__(self, w: int = 4) -> None:
        super().__init__()
        self.enc = nn.ModuleList([conv_block(1, w), conv_block(w, 2 * w), conv_block(2 * w, 4 * w)])
        self.mid = conv_block(4 * w, 8 * w)
        self.up = nn.ModuleList([nn.ConvTranspose2d(8 * w, 4 * w, 2, 2),
                                 nn.ConvTranspose2d(4 * w, 2 * w, 2, 2),
                                 nn.ConvTranspose2d(2 * w, w, 2, 2)])
        self.dec = nn.ModuleList([conv_block(8 * w, 4 * w), conv_block(4 * w, 2 * w),
                                  conv_block(2 * w, w)])
        self.head = nn.Conv2d(w, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for enc in self.enc:
            x = enc(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.mid(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)


class ControlFlow(nn.Module):
    """``if x.sum() > 0`` picks a stack of three residual blocks, else a stack of two."""

    def __init__(self) -> None:
        super().__init__()
        self.stack_a = nn.ModuleList(mlp() for _ in range(3))
        self.stack_b = nn.ModuleList(mlp() for _ in range(2))

    def forward(self, x: Tensor) -> Tensor:
        stack = self.stack_a if x.sum() > 0 else self.stack_b
        for f in stack:
            x = x + f(x)
        return x


# --- adds that are not residual ------------------------------------------------------------

class BiasAdds(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(D, D, bias=False)
        self.bias = nn.Parameter(torch.zeros(D))
        self.conv = nn.Conv2d(D, D, 1, bias=False)
        self.cbias = nn.Parameter(torch.zeros(D))

    def forward(self, x: Tensor) -> Tensor:
        y = self.lin(x) + self.bias
        z = self.conv(y[:, :, None, None]) + self.cbias.view(1, -1, 1, 1)
        return z.flatten(1)


class PositionEmbeddings(nn.Module):
    """x + learned table, x + embedding(arange): static operands."""

    def __init__(self) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(50, D), nn.Embedding(32, D)
        self.table = nn.Parameter(torch.randn(1, 32, D))
        self.lin = nn.Linear(D, D)

    def forward(self, input_ids: Tensor) -> Tensor:
        t = input_ids.shape[1]
        x = self.tok(input_ids) + self.table[:, :t]
        x = self.lin(x) + self.pos(torch.arange(t))
        return x


class ScoresPlusMask(nn.Module):
    """scores + mask, the mask from another input and from the same input by plain ops."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k = nn.Linear(D, D), nn.Linear(D, D)

    def forward(self, x: Tensor, attention_mask: Tensor) -> Tensor:
        scores = self.q(x) @ self.k(x).transpose(-1, -2)
        scores = scores + (1.0 - attention_mask[:, None, :]) * -1e9
        pad = (x.abs().sum(-1) == 0).float() * -1e9
        return scores + pad[:, None, :]


class GeluTanhFormula(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(D, D)

    def forward(self, x: Tensor) -> Tensor:
        return gelu_tanh(self.fc(x))


class RotaryOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(D, D)
        self.register_buffer("cos", torch.rand(8, D))
        self.register_buffer("sin", torch.rand(8, D))

    def forward(self, x: Tensor) -> Tensor:
        q = self.q(x)
        return q * self.cos + rotate_half(q) * self.sin


class DistillationHeads(nn.Module):
    """(head(x) + head_dist(x)) / 2: two equal heads averaged."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(D, D)
        self.head = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, 10))
        self.head_dist = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, 10))

    def forward(self, x: Tensor) -> Tensor:
        h = self.body(x)
        return (self.head(h[:, 0]) + self.head_dist(h[:, 1])) / 2


class CenterSubtract(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(D, D)

    def forward(self, x: Tensor) -> Tensor:
        h = self.lin(x)
        return h - h.mean(-1, keepdim=True)


class MultiBranchMerge(nn.Module):
    """conv_a(x) + conv_b(x), and linear(x) + mlp(x): heavy branches summed, no skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.conv_b = nn.Conv2d(4, 4, 3, 1, 1), nn.Conv2d(4, 4, 1)
        self.lin, self.mlp = nn.Linear(4, 4), mlp(4)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv_a(x) + self.conv_b(x)
        y = y.mean((2, 3))
        return self.lin(y) + self.mlp(y)


def _ids(n: int = 8) -> Tensor:
    return torch.randint(0, 50, (2, n))


def cases() -> dict[str, Case]:
    """Fresh instances of every case (seeded, so every call builds the same models)."""
    torch.manual_seed(0)
    x = torch.randn(2, D)
    return {
        "identity_mlp": Case(IdentityMLP(), x, ["identity"], ["add"], ["f"], [1]),
        "projection_shortcut": Case(ProjectionShortcut(), torch.randn(1, 4, 8, 8),
                                    ["projection"], ["add"], ["add"], [1]),
        "pre_norm_side_inputs": Case(
            PreNormTransformer(), {"input_ids": _ids(), "attention_mask": torch.ones(2, 8)},
            ["identity"] * 6, ["add"] * 6,
            [f"layers.{i}.{m}" for i in range(3) for m in ("attn", "mlp")], [6]),
        "post_norm": Case(PostNormTransformer(), _ids(), ["identity"] * 4, ["add"] * 4,
                          ["layers.0.attn", "layers.0.mlp", "layers.1.attn", "layers.1.mlp"], [4]),
        "post_activation_inplace": Case(PostActivationResNet(), torch.randn(1, 3, 8, 8),
                                        ["identity"] * 3, ["add"] * 3,
                                        ["blocks.0", "blocks.1", "blocks.2"], [3]),
        "nested": Case(NestedResiduals(), x, ["identity"] * 6, None,
                       ["g1.a", "g1.b", "g1", "g2.a", "g2.b", "g2"], [2, 2, 2]),
        "reused_block": Case(ReusedBlock(), x, ["identity"] * 3, ["add"] * 3,
                             ["block#1", "block#2", "block#3"], [3]),
        "scaled": Case(ScaledJoins(), x, ["identity"] * 3, ["scaled"] * 3, ["f1", "f2", "f3"], [3]),
        "gated": Case(GatedJoin(), (x, torch.randn(2, D)), ["identity"], ["gated"], ["f"], [1]),
        "inplace_joins": Case(InplaceJoins(), x, ["identity"] * 2, ["add"] * 2, ["f1", "f2"], [2]),
        "dense_block": Case(DenseBlock(), torch.randn(1, 4, 6, 6), ["concat"] * 3, ["concat"] * 3),
        "unet3": Case(UNet3(), torch.randn(1, 1, 16, 16), ["concat"] * 3, ["concat"] * 3),
        "control_flow": Case(ControlFlow(), x.abs() + 0.1, ["identity"] * 3, ["add"] * 3,
                             ["stack_a.0", "stack_a.1", "stack_a.2"], [3]),
        "bias_adds": Case(BiasAdds(), x, []),
        "position_embeddings": Case(PositionEmbeddings(), _ids(), []),
        "scores_plus_mask": Case(ScoresPlusMask(), (torch.randn(2, 8, D), torch.ones(2, 8)), []),
        "gelu_tanh_formula": Case(GeluTanhFormula(), x, []),
        "rope": Case(RotaryOnly(), torch.randn(2, 8, D), []),
        "distillation_heads": Case(DistillationHeads(), torch.randn(2, 3, D), []),
        "center_subtract": Case(CenterSubtract(), x, []),
        "multi_branch_merge": Case(MultiBranchMerge(), torch.randn(1, 4, 6, 6), []),
    }
