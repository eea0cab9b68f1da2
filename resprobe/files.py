"""Model files, sniffed by content: state_dicts and checkpoints, pickled modules (only when
trusted), safetensors, TorchScript archives and ExportedPrograms. A file of weights alone comes
back as ``Weights``: ``load`` builds the architecture ``--arch`` names and fills it."""

from __future__ import annotations

import pickle
import pickletools
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .errors import SourceError
from .loaded import Loaded

__all__ = ["Weights", "read_file", "sniff"]

_STATE_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network",
               "weights", "params", "ema", "model_ema")
_PREFIXES = ("module.", "_orig_mod.")


def sniff(path: Path) -> str:
    """What a file holds, from its bytes: ``torch``, ``torchscript``, ``exported``,
    ``safetensors``, or raise ``SourceError`` for anything else."""
    with path.open("rb") as f:
        head = f.read(64)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            raise SourceError(f"{path} is a truncated or corrupt archive; save it again") from None
        if any("/code/__torch__" in n or n.endswith("/constants.pkl") for n in names):
            return "torchscript"
        if any("/models/" in n and n.endswith(".json") for n in names) or any(
                "serialized_exported_program" in n for n in names):
            return "exported"
        return "torch"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 8 + n <= path.stat().st_size:
            return "safetensors"
    if head[:1] == b"\x80":  # a pickle: torch.save's legacy (non-zip) format
        return "torch"
    text = head.lstrip()
    if text[:1] in (b"{", b"["):
        raise SourceError(f"{path} is a JSON file, not a PyTorch model file")
    raise SourceError(
        f"{path} is not a PyTorch model file (unrecognised content); expected a file written by "
        "torch.save, torch.jit.save, torch.export.save or safetensors"
    )


@dataclass(frozen=True)
class Weights:
    """A state_dict read from ``source`` (a state_dict, checkpoint or safetensors file): weights
    without the architecture. ``load`` checks ``--arch`` with ``check_arch``, builds it, and
    puts the weights in with ``into``."""

    source: str
    state: dict[str, Tensor]  # module prefixes such as ``module.`` already stripped
    what: str  # "state_dict", "checkpoint" or "safetensors file"
    extra: tuple[str, ...] = ()  # what else a checkpoint holds (optimizer, epoch, ...)

    def check_arch(self, arch: str | None) -> str:
        """``arch`` when it can take these weights; else a ``SourceError`` says what to pass."""
        state = self.state
        if arch is None:
            raise SourceError(
                f"{self.source} is a {self.what} ({len(state)} tensors, "
                f"{sum(t.numel() for t in state.values()):,} values; top-level names: "
                f"{', '.join(_prefixes(state))}): weights without the architecture, so there is no "
                "graph to capture; pass --arch SOURCE, e.g. --arch torchvision:resnet50"
            )
        if Path(arch).resolve() == Path(self.source).resolve():
            raise SourceError(f"--arch must name the architecture, not {self.source} itself")
        _check_arch_file(arch)
        return arch

    def into(self, target: Loaded, arch: str) -> Loaded:
        """``target`` (the model ``arch`` built) with these weights loaded into it."""
        notes = target.notes + _fit(self.source, self.state, target.model, arch)
        if self.extra:
            notes += (f"checkpoint also holds: {', '.join(self.extra)}",)
        return Loaded(target.model, target.inputs, "unknown", f"{self.what} {self.source} loaded into {arch}",
                      notes=notes)


def read_file(source: str, *, trust: bool = False) -> Loaded | Weights:
    """Read a model file: a ``Loaded``, or the ``Weights`` of a state_dict (they need an
    architecture: ``load`` builds the one ``--arch`` names); a pickled module needs ``trust``."""
    path = Path(source)
    if not path.exists():
        raise SourceError(f"no such file: {source}")
    if path.is_dir():
        hf = (path / "config.json").exists()
        hint = f"; it holds config.json, so pass hf:{source}" if hf else ""
        raise SourceError(f"{source} is a directory, not a model file{hint}")
    if path.stat().st_size == 0:
        raise SourceError(f"{source} is empty")
    kind = sniff(path)
    if kind == "safetensors":
        return Weights(source, _strip_prefixes(_safetensors(path)), "safetensors file")
    if kind == "exported":
        from ._exported import load_exported

        return load_exported(path)
    if kind == "torchscript":
        from ._torchscript import load_torchscript

        return load_torchscript(path, trust=trust)
    return _torch_file(source, path, trust)


def _torch_file(source: str, path: Path, trust: bool) -> Loaded | Weights:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not trust:
            names = _pickled_classes(path)
            found = (", ".join(ascii(n) for n in names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4
                                                                 else "")) or "Python objects"
            raise SourceError(
                f"{source} holds a pickled Python object ({found}); unpickling it runs code from "
                "the file, so it was not loaded. If you trust the file, pass --trust; better, "
                "save a state_dict and pass it with --arch"
            ) from err
        obj = _load_trusted(source, path)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise SourceError(f"{source} is truncated or corrupt ({_first_line(err)}); save it again") from err
    if isinstance(obj, nn.Module):
        return Loaded(obj, description=f"pickled {type(obj).__name__} from {source} (trusted)")
    state, extra = _find_state_dict(obj)
    if state is None:
        raise SourceError(
            f"{source} holds a {type(obj).__name__}, not a model or a state_dict; save the model "
            "with torch.save(model.state_dict(), ...)"
        )
    return Weights(source, _strip_prefixes(state), "checkpoint" if extra else "state_dict", tuple(extra))


def _load_trusted(source: str, path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise SourceError(
            f"{source} could not be unpickled ({type(err).__name__}: {_first_line(err)}); the code "
            "that defines its classes must be importable"
        ) from err


def _pickled_classes(path: Path) -> list[str]:
    """The classes a pickle refers to, read without unpickling it."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next(n for n in z.namelist() if n.endswith("data.pkl"))
                data = z.read(name)
        else:
            data = path.read_bytes()
        found: list[str] = []
        strings: list[str] = []
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                strings.append(str(arg))
            elif op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
        plain = ("torch._utils", "collections.OrderedDict", "torch.FloatStorage", "torch.LongStorage")
        names = [c for c in dict.fromkeys(found) if not c.startswith(plain)]
        # what can run code first: a file cannot hide exec behind a few harmless-looking classes
        return sorted(names, key=lambda c: c.startswith(("torch.", "torchvision.", "collections.")))
    except Exception:  # noqa: BLE001 - a best-effort description only
        return []


def _find_state_dict(obj: Any) -> tuple[dict[str, Tensor] | None, list[str]]:
    if _is_state_dict(obj):
        return dict(obj), []
    if isinstance(obj, Mapping):
        for key in _STATE_KEYS:
            if _is_state_dict(obj.get(key)):
                return dict(obj[key]), [str(k) for k in obj if k != key]
    return None, []


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, Mapping) and bool(obj)
            and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()))


def _safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file as load_safetensors

    try:
        return dict(load_safetensors(str(path), device="cpu"))
    except Exception as err:
        raise SourceError(f"{path} is a corrupt safetensors file ({_first_line(err)})") from err


def _check_arch_file(arch: str) -> None:
    """A graph file cannot take a state_dict: refuse it before anything in it is loaded."""
    kind = sniff(Path(arch)) if Path(arch).is_file() else None
    what = {"exported": "an ExportedProgram", "torchscript": "a TorchScript archive"}.get(kind or "")
    if what:
        raise SourceError(
            f"--arch {arch} is {what}: it is read as a graph only and cannot take a state_dict; "
            "pass a Python source as --arch (package.module:callable or torchvision:NAME)"
        )


def _fit(source: str, state: dict[str, Tensor], model: nn.Module, arch: str) -> tuple[str, ...]:
    want = model.state_dict()
    params = {n for n, _ in model.named_parameters()}
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    misshaped = [f"{k} {tuple(state[k].shape)} vs {tuple(want[k].shape)}" for k in state
                 if k in want and state[k].shape != want[k].shape]
    bad_missing = [k for k in missing if k in params]
    if bad_missing or misshaped:
        parts = [f"{len(bad_missing)} missing parameter(s) (e.g. {', '.join(bad_missing[:3])})"
                 if bad_missing else "",
                 f"{len(misshaped)} with another shape (e.g. {'; '.join(misshaped[:2])})"
                 if misshaped else "",
                 f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})" if unexpected else ""]
        raise SourceError(
            f"{source} does not fit {arch}: {', '.join(p for p in parts if p)}; check --arch"
        )
    with torch.no_grad():
        model.load_state_dict(state, strict=False)
    notes = []
    if missing:
        notes.append(f"{len(missing)} buffer(s) not in {source} kept their defaults: "
                     f"{', '.join(missing[:3])}")
    if unexpected:
        notes.append(f"{len(unexpected)} tensor(s) in {source} were not used: {', '.join(unexpected[:3])}")
    return tuple(notes)


def _strip_prefixes(state: dict[str, Tensor]) -> dict[str, Tensor]:
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _prefixes(state: Mapping[str, Tensor], limit: int = 6) -> list[str]:
    tops = list(dict.fromkeys(k.split(".", 1)[0] for k in state))
    return tops[:limit] + ([f"… {len(tops) - limit} more"] if len(tops) > limit else [])


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
