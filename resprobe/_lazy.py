"""The package's public names, imported on first use (PEP 562), so that ``import resprobe``,
``resprobe --version`` and ``--help`` do not import torch."""

from __future__ import annotations

import importlib
import importlib.util
import types
from typing import Any

__all__ = ["LazyPackage"]


class LazyPackage(types.ModuleType):
    """A package whose public names are imported on first use: ``_LAZY`` (in the package's
    ``__init__``) maps each to ``"module"`` or ``"module:attribute"``, relative to the package.

    Some of them are functions named like the submodule that defines them (``analyze``,
    ``capture``, ``gated``, ``lesion``, ``load``, ``measure``). Importing such a submodule
    binds it on the package under that name, which would hide the function depending on
    import order; that binding is refused, so ``resprobe.capture`` is always the function, as
    it was when every name was imported eagerly. The submodule is
    ``sys.modules["resprobe.capture"]`` (``from resprobe.capture import X`` works as ever)."""

    def __getattr__(self, name: str) -> Any:
        target = self.__dict__.get("_LAZY", {}).get(name)
        if target is None:  # a submodule not imported yet (all were, when the names were eager)
            if name.startswith("__") or importlib.util.find_spec(f"{self.__name__}.{name}") is None:
                raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
            return importlib.import_module(f"{self.__name__}.{name}")
        module, _, attribute = target.partition(":")
        value = getattr(importlib.import_module(module, self.__name__), attribute or name)
        super().__setattr__(name, value)  # found in the module's namespace from now on
        return value

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.__dict__.get("_LAZY", ())))

    def __setattr__(self, name: str, value: Any) -> None:
        if (isinstance(value, types.ModuleType) and name in self.__dict__.get("_LAZY", {})
                and value.__name__ == f"{self.__name__}.{name}"):
            return  # the import system binding a submodule over the public name: the name wins
        super().__setattr__(name, value)
