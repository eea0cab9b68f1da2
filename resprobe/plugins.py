"""The plugin registry: adapters, probes and exporters from entry points, validated at load."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol, runtime_checkable

from .errors import UsageError

__all__ = ["GROUPS", "Adapter", "Exporter", "Option", "PluginInfo", "Probe", "Registry", "registry"]

GROUPS = {"adapter": "resprobe.adapters", "probe": "resprobe.probes", "exporter": "resprobe.exporters"}
_METHOD = {"adapter": "build", "probe": "run", "exporter": "write"}
DISABLE_ENV = "RESPROBE_DISABLE_PLUGINS"


class _Plugin(Protocol):
    """What every plugin has: its entry-point name, the modules it needs (import names) and
    the command that installs them."""

    name: str
    requires: tuple[str, ...]
    install: str


@runtime_checkable
class Adapter(_Plugin, Protocol):
    """Builds models from a zoo: ``resprobe analyze NAME:MODEL`` calls ``build(MODEL, trust=...)``
    (or ``build(MODEL)`` when ``build`` takes no ``trust``), which returns a ``resprobe.Loaded``
    (model, example inputs, weights provenance). Import the zoo inside ``build``; run nothing
    from a user's file or folder unless ``trust`` is true."""

    def build(self, name: str) -> Any: ...


@dataclass(frozen=True)
class Option:
    """A command-line option a probe declares: ``resprobe analyze`` lists it in its ``--help``
    and hands its value to the probe in ``context.settings``.

    ``flag`` is the option's name (``"--max-length"``); ``type`` is ``bool`` (an on/off flag),
    ``int``, ``float``, ``str`` or any ``click.ParamType`` (``click.IntRange(min=1)``, a
    ``click.Choice``); ``multiple`` makes it repeatable (its value a tuple). The value is
    stored under ``dest`` (by default the flag without its dashes, ``-`` read as ``_``):
    when ``resprobe.Settings`` has a field of that name it sets the field (the built-in
    probes' options), otherwise it goes into ``Settings.options`` (a plugin probe reads it
    with ``context.settings.options.get(dest, default)``; from the Python API it is absent
    unless the caller set it). Start ``help`` with the probe's name (``"depth: ..."``)."""

    flag: str
    type: Any = bool
    default: Any = None
    help: str = ""
    metavar: str | None = None
    multiple: bool = False
    show_default: bool = False
    dest: str = ""

    @property
    def name(self) -> str:
        """Where the value is stored: ``dest``, or the flag without its dashes."""
        return self.dest or self.flag.lstrip("-").replace("-", "_")


@runtime_checkable
class Probe(_Plugin, Protocol):
    """Measures a captured model: ``run(context)`` returns a ``resprobe.ProbeResult``.

    Optional ``options``: a tuple of ``resprobe.Option``, the command-line options of the
    probe; ``resprobe analyze`` offers them (``--help`` lists them after its own) and passes
    their values in ``context.settings``. Declaring them must not import anything heavy: the
    CLI reads them to show ``--help``, before any model is loaded."""

    def run(self, context: Any) -> Any: ...


@runtime_checkable
class Exporter(_Plugin, Protocol):
    """Writes a ``resprobe.Report`` into a directory: ``write(report, directory)`` returns the
    path it wrote."""

    def write(self, report: Any, directory: Any) -> Any: ...


@dataclass(frozen=True)
class PluginInfo:
    """One entry point: what it is, where it came from, and whether it can be used."""

    name: str
    kind: str
    distribution: str
    status: str  # "ok" | "disabled" | "missing dependency" | "broken"
    detail: str = ""
    obj: Any = field(default=None, repr=False, compare=False)


class Registry:
    """Every plugin of every group, each group loaded on first use (``resprobe analyze --help``
    reads the probes' options without importing the adapters' zoos). A plugin that fails to
    load or validate is kept as a ``PluginInfo`` that says why; the others keep working."""

    def __init__(self, disabled: Iterable[str] = (), eps: Iterable[tuple[str, EntryPoint]] | None = None):
        env = {d.strip() for d in os.environ.get(DISABLE_ENV, "").split(",") if d.strip()}
        self.disabled = set(disabled) | env
        self._given = None if eps is None else list(eps)
        self._loaded: dict[str, list[PluginInfo]] = {}

    @property
    def infos(self) -> list[PluginInfo]:
        """Every plugin of every kind (all groups loaded)."""
        return [p for kind in GROUPS for p in self.infos_of(kind)]

    def infos_of(self, kind: str) -> list[PluginInfo]:
        """The plugins of one kind, usable or not (that group loaded now if it was not yet)."""
        if kind not in self._loaded:
            found = ([ep for k, ep in self._given if k == kind] if self._given is not None
                     else entry_points(group=GROUPS[kind]) if kind in GROUPS else ())
            self._loaded[kind] = [self._load(kind, ep) for ep in found]
        return self._loaded[kind]

    def _load(self, kind: str, ep: EntryPoint) -> PluginInfo:
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "unknown distribution"
        if ep.name in self.disabled:
            return PluginInfo(ep.name, kind, dist, "disabled",
                              f"disabled by --disable-plugin or {DISABLE_ENV}")
        try:
            obj = ep.load()
        except ImportError as err:
            missing = err.name or str(err)
            return PluginInfo(ep.name, kind, dist, "missing dependency",
                              f"needs {missing}: pip install {missing.split('.')[0]}")
        except Exception as err:  # noqa: BLE001 - a broken plugin must not break the others
            return PluginInfo(ep.name, kind, dist, "broken", f"failed to load: {type(err).__name__}: {err}")
        if isinstance(obj, type):
            obj = obj()
        problem = _invalid(kind, ep.name, obj)
        if problem:
            return PluginInfo(ep.name, kind, dist, "broken", problem)
        absent = [m for m in obj.requires if importlib.util.find_spec(m) is None]
        if absent:
            return PluginInfo(ep.name, kind, dist, "missing dependency",
                              f"needs {', '.join(absent)}: {obj.install}", obj)
        return PluginInfo(ep.name, kind, dist, "ok", "", obj)

    def of_kind(self, kind: str) -> dict[str, Any]:
        """The usable plugins of one kind, by name."""
        return {p.name: p.obj for p in self.infos_of(kind) if p.status == "ok"}

    def adapters(self) -> dict[str, Any]:
        return self.of_kind("adapter")

    def get(self, kind: str, name: str) -> Any:
        """The plugin ``name`` of ``kind``, or a ``UsageError`` that says why it cannot be used."""
        for p in self.infos_of(kind):
            if p.name == name:
                if p.status == "ok":
                    return p.obj
                raise UsageError(f"{kind} plugin {name!r} (from {p.distribution}) is {p.status}: {p.detail}")
        known = ", ".join(sorted(self.of_kind(kind))) or "none"
        raise UsageError(f"no {kind} plugin named {name!r}; installed: {known} (see resprobe plugins)")


def _invalid(kind: str, name: str, obj: Any) -> str:
    method = _METHOD[kind]
    if not callable(getattr(obj, method, None)):
        return f"plugin {name!r} is not a valid {kind}: it has no {method}() method"
    if getattr(obj, "name", None) != name:
        return f"plugin {name!r} is not a valid {kind}: its name is {getattr(obj, 'name', None)!r}"
    requires = getattr(obj, "requires", None)
    if not isinstance(requires, tuple) or not all(isinstance(r, str) for r in requires):
        return f"plugin {name!r} is not a valid {kind}: requires must be a tuple of module names"
    if not isinstance(getattr(obj, "install", None), str):
        return f"plugin {name!r} is not a valid {kind}: install must be the install command"
    options = getattr(obj, "options", ()) if kind == "probe" else ()
    if not isinstance(options, tuple) or not all(isinstance(o, Option) and o.flag.startswith("--")
                                                 for o in options):
        return f"plugin {name!r} is not a valid {kind}: options must be a tuple of resprobe.Option (--flag)"
    return ""


def registry(disabled: Iterable[str] = ()) -> Registry:
    """Load every installed plugin (minus ``disabled`` and those in ``$RESPROBE_DISABLE_PLUGINS``)."""
    return Registry(disabled)
