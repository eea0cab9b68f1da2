"""SOURCE -> nn.Module: resolve ``package.module:callable`` into a model and its example inputs."""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any

from torch import nn

from .errors import SourceError
from .inputs import Inputs

__all__ = ["Loaded", "load"]


@dataclass(frozen=True)
class Loaded:
    """A model built from a source, with the example inputs the source supplied (if any)."""

    model: nn.Module
    inputs: Inputs | None
    source: str


def load(source: str) -> Loaded:
    """Build the model named by ``source``: ``package.module:callable``.

    The callable is called with no arguments and returns an ``nn.Module`` or a tuple
    ``(nn.Module, example_inputs)``. The current directory is importable, so a file
    ``models.py`` next to you is ``models:build``.
    """
    module_name, sep, attr = source.partition(":")
    if not sep or not module_name or not attr or not all(
        part.isidentifier() for part in module_name.split(".") + attr.split(".")
    ):
        raise SourceError(
            f"cannot read model source {source!r}; write it as package.module:callable, "
            "e.g. torchvision.models:resnet18 or mymodels:build"
        )
    factory = _resolve(module_name, attr)
    try:
        made = factory()
    except Exception as err:
        raise SourceError(
            f"calling {source}() failed: {type(err).__name__}: {err}; it must build the model "
            "with no arguments"
        ) from err
    return _unpack(source, made)


def _resolve(module_name: str, attr: str) -> Any:
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise SourceError(
            f"cannot import {module_name!r} ({err}); check the name, or install the package "
            "that provides it"
        ) from err
    finally:
        sys.path.pop(0)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise SourceError(f"{module_name!r} has no attribute {attr!r}; check the name after ':'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise SourceError(f"{module_name}:{attr} is not callable; point at a function that builds the model")
    return obj


def _unpack(source: str, made: Any) -> Loaded:
    if isinstance(made, nn.Module):
        return Loaded(made, None, source)
    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], nn.Module):
        return Loaded(made[0], Inputs.of(made[1]), source)
    raise SourceError(
        f"{source}() returned {type(made).__name__}; it must return an nn.Module or a tuple "
        "(nn.Module, example_inputs)"
    )
