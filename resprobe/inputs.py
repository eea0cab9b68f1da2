"""Inputs: the positional and keyword arguments of one forward call."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ._memory import ensure_fits
from .errors import InputsError

__all__ = ["Inputs", "infer_inputs", "load_inputs", "nbytes", "parse_shape"]

_DTYPES = {
    "float32": torch.float32, "float": torch.float32, "float16": torch.float16,
    "half": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64,
    "int64": torch.int64, "long": torch.int64, "int32": torch.int32, "int": torch.int32,
    "bool": torch.bool, "uint8": torch.uint8,
}


@dataclass(frozen=True)
class Inputs:
    """Arguments for one call ``model(*args, **kwargs)``."""

    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, value: Any) -> Inputs:
        """Normalise a tensor, a tuple/list of args, a dict of kwargs or an ``Inputs``."""
        if isinstance(value, Inputs):
            return value
        if isinstance(value, torch.Tensor):
            return cls((value,), {})
        if isinstance(value, (tuple, list)):
            return cls(tuple(value), {})
        if isinstance(value, Mapping):
            if not all(isinstance(k, str) for k in value):
                raise InputsError("keyword inputs need string keys; pass a dict like {'input_ids': ...}")
            return cls((), dict(value))
        raise InputsError(
            f"cannot use {type(value).__name__} as model inputs; pass a tensor, a tuple of "
            "arguments, a dict of keyword arguments or resprobe.Inputs(args, kwargs)"
        )

    def to(self, device: torch.device | str) -> Inputs:
        """The same inputs with every tensor (in nested lists, tuples and dicts) on ``device``."""

        def move(v: Any) -> Any:
            if isinstance(v, torch.Tensor):
                return v.to(device)
            if isinstance(v, (list, tuple)) and not isinstance(v, torch.Size):
                return type(v)(move(x) for x in v)
            if isinstance(v, dict):
                return {k: move(x) for k, x in v.items()}
            return v

        return Inputs(tuple(move(a) for a in self.args), {k: move(v) for k, v in self.kwargs.items()})

    def repeat(self, times: int) -> Inputs:
        """The batch ``times`` over, stacked along the first dimension of every batched tensor."""

        def rep(v: Any) -> Any:
            return torch.cat([v] * times) if isinstance(v, torch.Tensor) and v.dim() else v

        return Inputs(tuple(rep(a) for a in self.args), {k: rep(v) for k, v in self.kwargs.items()})

    def named(self) -> list[tuple[str, Any]]:
        """Each argument with a display name: its position or its keyword."""
        return [(str(i), a) for i, a in enumerate(self.args)] + list(self.kwargs.items())


def parse_shape(text: str) -> torch.Tensor:
    """Build a random example tensor from ``'1x3x32x32'`` or ``'1x16:int64'``."""
    if len(text) > 200:
        raise InputsError(f"bad input shape {text[:40]!r}…: too long; write it like 1x3x224x224")
    spec, _, dtype_name = text.partition(":")
    try:
        shape = tuple(int(p) for p in spec.lower().split("x"))
    except ValueError:
        raise InputsError(f"bad input shape {text!r}; write it like 1x3x224x224 or 1x16:int64") from None
    if not shape or any(d <= 0 for d in shape):
        raise InputsError(f"bad input shape {text!r}; every dimension must be a positive integer")
    dtype = _DTYPES.get(dtype_name or "float32")
    if dtype is None:
        known = ", ".join(sorted(_DTYPES))
        raise InputsError(f"unknown dtype {dtype_name!r} in {text!r}; use one of {known}")
    ensure_fits(math.prod(shape) * dtype.itemsize, f"an input of shape {spec}",
                "pass a smaller --input-shape")
    if dtype.is_floating_point:
        return torch.randn(shape, dtype=dtype)
    if dtype == torch.bool:
        return torch.ones(shape, dtype=dtype)
    return torch.randint(0, 2, shape, dtype=dtype)


def load_inputs(path: str) -> Inputs:
    """Example inputs saved with ``torch.save``: a tensor, a tuple/list or a dict (weights-only)."""
    import pickle
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise InputsError(f"no such inputs file: {path}")
    try:
        value = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputsError(f"{path} holds pickled Python objects; save the inputs as a tensor, a tuple "
                          "or a dict of tensors") from None
    except Exception as err:
        raise InputsError(f"{path} is not a torch.save file ({type(err).__name__}); save the inputs "
                          "with torch.save") from err
    inputs = Inputs.of(value)
    ensure_fits(nbytes(inputs), f"the inputs in {path}", "save smaller example inputs")
    return inputs


def nbytes(inputs: Inputs) -> int:
    """How large the inputs' tensors are once used: a stride-0 ``expand`` is small on disk only."""
    return sum(v.numel() * v.element_size() for _, v in inputs.named() if isinstance(v, torch.Tensor))


def infer_inputs(model: torch.nn.Module) -> tuple[Inputs, str] | None:
    """Random inputs shaped for the model's first weighted layer, and what was inferred; or None."""
    from torch import nn

    for module in model.modules():
        if next(iter(module.children()), None) is not None or not any(True for _ in module.parameters(False)):
            continue
        if isinstance(module, nn.Embedding):
            x = torch.randint(0, module.num_embeddings, (1, 16))
        elif isinstance(module, nn.Conv1d):
            x = torch.randn(1, module.in_channels, 128)
        elif isinstance(module, nn.Conv2d):
            x = torch.randn(1, module.in_channels, 224, 224)
        elif isinstance(module, nn.Conv3d):
            x = torch.randn(1, module.in_channels, 8, 112, 112)
        elif isinstance(module, nn.Linear):
            x = torch.randn(1, module.in_features)
        elif isinstance(module, nn.LayerNorm):
            x = torch.randn(1, 16, *module.normalized_shape)
        else:
            return None
        dtype = str(x.dtype).replace("torch.", "")
        return Inputs((x,)), f"{tuple(x.shape)} {dtype}, inferred from {type(module).__name__}"
    return None
