"""SOURCE -> nn.Module: zoo adapters (``torchvision:resnet50``), files, or ``package.module:callable``."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import sys
import warnings
from dataclasses import replace
from typing import Any

from torch import nn

from .errors import SourceError, UsageError
from .inputs import Inputs
from .loaded import Loaded, as_loaded

# ``Loaded`` and ``as_loaded`` live in ``loaded``; they stay importable from here
__all__ = ["Loaded", "as_loaded", "load", "resolve_callable"]


def load(source: str, *, arch: str | None = None, trust: bool = False, plugins: Any = None,
         seed: int | None = 0, meta: bool = False) -> Loaded:
    """Build the model named by ``source``, with torch's random number generator seeded with
    ``seed`` while it is built (so random weights are the same on every call; the global RNG
    state is left as it was; None: not seeded).

    ``trust`` allows what runs code stored in a file or folder: unpickling a whole model, loading
    a TorchScript archive, a Hugging Face folder's own Python code.

    - ``ADAPTER:NAME`` for an installed adapter plugin: ``torchvision:resnet50``,
      ``timm:convnext_tiny``, ``hf:PATH`` (see ``resprobe plugins``);
    - a file path: a state_dict or checkpoint (with ``arch``, a source for the architecture),
      a TorchScript archive or an ExportedProgram (read from its graph, never run),
      safetensors, or a pickled module (only with ``trust=True``: unpickling runs code);
    - ``package.module:callable``: a function that returns an ``nn.Module``, a tuple
      ``(nn.Module, example_inputs)`` or a ``Loaded``. Importing the module runs its code; the
      current folder is searched after the installed packages.

    ``plugins`` is a ``resprobe.plugins.Registry`` (default: every installed plugin). ``meta``
    builds the model on the meta device: its structure with no weight allocated (weights
    ``"none"``; a model of any size; nothing can be measured on it).
    """
    import torch

    with torch.random.fork_rng(devices=[]), torch.device("meta") if meta else contextlib.nullcontext(), \
            warnings.catch_warnings():
        # a factory that loads its own weights into a model built on meta: a no-op, said once here
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter")
        if seed is not None:
            torch.manual_seed(seed)
        loaded = _load(source, arch, trust, plugins, meta)
    if meta and loaded.graph is None:
        loaded = _on_meta(loaded)
    return replace(loaded, seed=seed if loaded.weights not in ("trained", "none") else loaded.seed)


def _on_meta(loaded: Loaded) -> Loaded:
    """The loaded model with every weight on the meta device (moved there when the source made
    real ones, e.g. a whole pickled model), and its example inputs there too."""
    if any(not t.is_meta for t in (*loaded.model.parameters(), *loaded.model.buffers())):
        loaded.model.to("meta")
    inputs = loaded.inputs.to("meta") if loaded.inputs is not None else None
    note = ("built on the meta device (--meta): the structure only, no weight allocated, so nothing "
            "is measured")
    notes = loaded.notes if any("meta device" in n for n in loaded.notes) else (*loaded.notes, note)
    return replace(loaded, inputs=inputs, weights="none", notes=notes)


def _load(source: str, arch: str | None, trust: bool, plugins: Any, meta: bool = False) -> Loaded:
    from .files import Weights, read_file
    from .plugins import registry

    prefix, sep, rest = source.partition(":")
    reg = plugins if plugins is not None else registry()
    adapters = reg.adapters()
    if sep and prefix not in adapters and any(p.name == prefix for p in reg.infos):
        reg.get("adapter", prefix)  # disabled or missing a dependency: say which
    if sep and prefix in adapters:
        built = _build(adapters[prefix], rest, trust)
        if not isinstance(built, Loaded):
            raise SourceError(f"adapter plugin {prefix!r} returned {type(built).__name__}, not a "
                              "resprobe.Loaded; the plugin is broken")
        return replace(built, source=source)
    if not sep or os.path.exists(source):
        found = read_file(source, trust=trust)
        if isinstance(found, Weights):  # weights only: --arch names the architecture, another source
            arch = found.check_arch(arch)
            if meta:  # the architecture alone: no weight is read into a model without values
                return replace(load(arch, plugins=reg, meta=True), source=source)
            found = found.into(load(arch, plugins=reg), arch)
        return replace(found, source=source)
    return replace(_from_callable(source, prefix, rest, sorted(adapters)), source=source)


def _build(adapter: Any, name: str, trust: bool) -> Any:
    """``adapter.build(name, trust=trust)``; adapters written before ``trust`` existed get ``name``
    only (and may not load anything that runs code)."""
    try:
        accepts = "trust" in inspect.signature(adapter.build).parameters
    except (TypeError, ValueError):
        accepts = False
    return adapter.build(name, trust=trust) if accepts else adapter.build(name)


def _from_callable(source: str, module_name: str, attr: str, adapters: list[str]) -> Loaded:
    if not module_name or not attr or not all(
        part.isidentifier() for part in module_name.split(".") + attr.split(".")
    ):
        raise SourceError(
            f"cannot read model source {source!r}; write it as ADAPTER:NAME "
            f"({', '.join(adapters) or 'no adapters installed'}), a file path, or "
            "package.module:callable"
        )
    factory = _resolve(module_name, attr, adapters)
    try:
        made = factory()
    except Exception as err:
        raise SourceError(
            f"calling {source}() failed: {type(err).__name__}: {err}; it must build the model "
            "with no arguments"
        ) from err
    return _unpack(source, made)


def resolve_callable(spec: str, what: str) -> Any:
    """The callable named by ``package.module:callable`` (importing runs the module's code; the
    current folder is searched after the installed packages)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or not all(
            part.isidentifier() for part in module_name.split(".") + attr.split(".")):
        raise UsageError(f"cannot read {what} {spec!r}; write it as package.module:callable")
    try:
        obj: Any = import_user_module(module_name)
    except ImportError as err:
        raise UsageError(f"{what} {spec}: cannot import {module_name!r} ({err})") from err
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    if not callable(obj):
        raise UsageError(f"{what} {spec}: no callable {attr!r} in {module_name!r}")
    return obj


def import_user_module(module_name: str) -> Any:
    """Import ``module_name`` (this runs its code). An installed package is imported with the
    current folder nowhere on ``sys.path``, so nothing lying there (a ``PIL.py``, an
    ``accimage.py`` that torchvision tries to import) can stand in for a package it imports.
    Only a module that is not installed is looked for in the current folder, searched after
    every installed package."""
    here = os.getcwd()
    top = module_name.split(".")[0]
    if top in sys.modules or _installed(top, here):
        return importlib.import_module(module_name)
    added = here not in sys.path and "" not in sys.path
    if added:
        sys.path.append(here)
    try:
        return importlib.import_module(module_name)
    finally:
        if added and here in sys.path:
            sys.path.remove(here)


def _installed(top: str, here: str) -> bool:
    """Whether ``top`` is importable from the installed packages alone (not the current folder)."""
    from importlib.machinery import PathFinder

    if top in sys.builtin_module_names:
        return True
    path = [p for p in sys.path if p not in ("", ".") and os.path.abspath(p) != here]
    return PathFinder.find_spec(top, path) is not None


def _resolve(module_name: str, attr: str, adapters: list[str]) -> Any:
    try:
        module = import_user_module(module_name)
    except ImportError as err:
        known = f"; installed adapters: {', '.join(adapters)}" if adapters else ""
        hint = (f"{module_name!r} is neither an installed adapter nor an importable module{known}"
                if "." not in module_name else f"cannot import {module_name!r} ({err})")
        raise SourceError(f"{hint}; check the name, or install the package that provides it") from err
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise SourceError(f"{module_name!r} has no attribute {attr!r}; check the name after ':'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise SourceError(f"{module_name}:{attr} is not callable; point at a function that builds the model")
    return obj


def _unpack(source: str, made: Any) -> Loaded:
    if isinstance(made, Loaded):
        return made
    if isinstance(made, nn.Module):
        return Loaded(made)
    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], nn.Module):
        return Loaded(made[0], Inputs.of(made[1]))
    raise SourceError(
        f"{source}() returned {type(made).__name__}; it must return an nn.Module, a tuple "
        "(nn.Module, example_inputs) or a resprobe.Loaded"
    )
