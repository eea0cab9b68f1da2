"""resprobe adapter for Hugging Face transformers: ``hf:PATH``, a local directory with
config.json (weights optional: random initialisation when there are none)."""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import resprobe

if TYPE_CHECKING:
    from .callback import ResprobeTrainerCallback as ResprobeTrainerCallback

__all__ = ["HFAdapter", "adapter"]

_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
            "pytorch_model.bin.index.json")


class HFAdapter:
    """``hf:./my-model`` builds the class the directory's config names (``architectures``, e.g.
    ``GPT2LMHeadModel``; else ``transformers.AutoModel``), offline, with example inputs made
    from its config (token ids and an attention mask, pixel values, …)."""

    name = "hf"
    requires = ("transformers",)
    install = "pip install transformers"

    def build(self, name: str, *, trust: bool = False) -> resprobe.Loaded:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded
        import transformers

        path = Path(name).expanduser()
        if not (path / "config.json").is_file():
            raise resprobe.SourceError(
                f"hf:{name} needs a local directory holding config.json; "
                f"{'it has none' if path.is_dir() else 'no such directory'} (models are never downloaded)")
        if not trust:
            _refuse_custom_code(name, path)
        try:
            config = transformers.AutoConfig.from_pretrained(path, local_files_only=True,
                                                             trust_remote_code=trust)
        except Exception as err:
            raise resprobe.SourceError(f"hf:{name}: config.json could not be read ({_line(err)})") from err
        files = [f for f in _WEIGHTS if (path / f).exists()]
        cls = _model_class(transformers, config)
        too_big = None if _on_meta() else _too_big(name, cls, config, trust)
        if _on_meta() or too_big:
            with torch.device("meta"):
                model = cls.from_config(config, trust_remote_code=trust)
            notes = () if too_big is None else (too_big,)
            return resprobe.Loaded(model.eval(), resprobe.Inputs((), _inputs(model, config)), "none",
                                   f"transformers {type(model).__name__} from {path}, built on the meta "
                                   "device (structure only, no weight allocated)", notes=notes,
                                   inputs_description="inputs made by the adapter from the config (meta)",
                                   tokenizer=_tokenizer(transformers, path, trust))
        if files:
            _refuse_pickles(name, path)
            try:
                model = cls.from_pretrained(path, local_files_only=True, trust_remote_code=trust)
            except Exception as err:
                raise resprobe.SourceError(
                    f"hf:{name}: the weights could not be loaded ({_line(err)})") from err
            weights, how = "unknown", f"weights from {files[0]}"
        else:
            model = cls.from_config(config, trust_remote_code=trust)
            weights, how = "random", "random weights (the directory holds none)"
        model.eval()
        return resprobe.Loaded(model, resprobe.Inputs((), _inputs(model, config)), weights,
                               f"transformers {type(model).__name__} from {path}, {how}",
                               inputs_description="random inputs made by the adapter from the config",
                               tokenizer=_tokenizer(transformers, path, trust))


def _line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0][:300] if text else "") or type(err).__name__


def _refuse_custom_code(name: str, path: Path) -> None:
    """Without --trust, a folder whose configs name Python code of its own is not loaded."""
    for file in ("config.json", "tokenizer_config.json", "processor_config.json",
                 "preprocessor_config.json"):
        f = path / file
        if not f.exists():
            continue
        if not f.is_file() or f.stat().st_size > 16 << 20:
            raise resprobe.SourceError(f"hf:{name}: {file} is not a regular JSON file of sane size; "
                                       "replace it")
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as err:
            raise resprobe.SourceError(f"hf:{name}: {file} is not valid JSON ({_line(err)}); fix or "
                                       "remove it") from err
        auto = data.get("auto_map") if isinstance(data, dict) else None
        if auto:
            first = next(iter(auto.values())) if isinstance(auto, dict) else auto
            raise resprobe.SourceError(
                f"hf:{name}: {file} names Python code of its own (auto_map: {str(first)[:80]}); loading "
                "it would run code from the folder, so it was not loaded; pass --trust if you trust it")


def _refuse_pickles(name: str, path: Path) -> None:
    """``*.bin`` weights must load without unpickling code (torch's weights-only reader)."""
    root = path.resolve()
    for index in path.glob("*.index.json"):  # shards named by an index must lie in the folder
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        except (OSError, ValueError, AttributeError) as err:
            raise resprobe.SourceError(
                f"hf:{name}: {index.name} is not a valid index ({_line(err)})") from err
        outside = [s for s in shards if not (path / str(s)).resolve().is_relative_to(root)]
        if outside:
            raise resprobe.SourceError(f"hf:{name}: {index.name} names weights outside the folder "
                                       f"({ascii(outside[0])}); refused")
    for f in sorted(path.rglob("*.bin")):
        try:
            torch.load(f, map_location="cpu", weights_only=True, mmap=True)
        except pickle.UnpicklingError:
            raise resprobe.SourceError(
                f"hf:{name}: {f.name} holds pickled Python objects, not plain tensors; unpickling "
                "it runs code from the file, so it was not loaded; save the weights as safetensors "
                "(model.save_pretrained) and try again") from None
        except Exception as err:
            raise resprobe.SourceError(f"hf:{name}: {f.name} is truncated or corrupt ({_line(err)}); "
                                       "save it again") from err


def _model_class(transformers: Any, config: Any) -> Any:
    """The class the config names (``architectures``: a saved ``GPT2LMHeadModel`` comes back
    with its head), else ``AutoModel``. ``from_config`` works on both."""
    for name in getattr(config, "architectures", None) or ():
        cls = getattr(transformers, str(name), None)
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
            return _Built(cls)
    return transformers.AutoModel


class _Built:
    """A concrete model class behind the Auto classes' two constructors."""

    def __init__(self, cls: Any):
        self.cls = cls

    def from_config(self, config: Any, trust_remote_code: bool = False) -> Any:
        return self.cls(config)

    def from_pretrained(self, path: Path, **kwargs: Any) -> Any:
        kwargs.pop("trust_remote_code", None)
        return self.cls.from_pretrained(path, **kwargs)


def _on_meta() -> bool:
    """Whether models are being built on the meta device (``resprobe analyze --meta``)."""
    get = getattr(torch, "get_default_device", None)
    return bool(get is not None and get().type == "meta")


def _too_big(name: str, cls: Any, config: Any, trust: bool) -> str | None:
    """Count the parameters on the meta device before allocating any of them: None when the
    model fits in memory, else the note that says it was built on the meta device instead."""
    try:
        with torch.device("meta"):
            shell = cls.from_config(config, trust_remote_code=trust)
    except Exception as err:
        raise resprobe.SourceError(f"hf:{name}: transformers cannot build this config "
                                   f"({_line(err)})") from err
    nbytes = sum(t.numel() * t.element_size() for t in (*shell.parameters(), *shell.buffers()))
    try:
        resprobe.ensure_fits(nbytes, f"hf:{name} ({type(shell).__name__})", "")
    except resprobe.InputsError as err:
        return (f"{str(err).rstrip('; ')}: built on the meta device instead (structure only, nothing "
                "measured); pass a smaller config to measure it")
    return None


def _tokenizer(transformers: Any, path: Path, trust: bool) -> Any:
    """The folder's own tokenizer, or None when it holds no tokenizer files."""
    if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")):
        return None
    try:
        return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True,
                                                          trust_remote_code=trust)
    except Exception:  # noqa: BLE001 - a folder without a usable tokenizer simply has none
        return None


def _inputs(model: Any, config: Any) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    vision = getattr(config, "vision_config", None) or config
    main = getattr(model, "main_input_name", "input_ids")
    out: dict[str, torch.Tensor] = {}
    if main == "input_ids" or getattr(config, "text_config", None) is not None:
        vocab = int(getattr(text, "vocab_size", None) or 1000)
        out["input_ids"] = torch.randint(0, vocab, (1, 16), generator=gen)
        out["attention_mask"] = torch.ones(1, 16, dtype=torch.long)
        if getattr(config, "is_encoder_decoder", False):
            out["decoder_input_ids"] = torch.randint(0, vocab, (1, 8), generator=gen)
    if main == "pixel_values" or getattr(config, "vision_config", None) is not None:
        size = getattr(vision, "image_size", 224)
        size = size if isinstance(size, int) else int(size[0])
        out["pixel_values"] = _randn((1, getattr(vision, "num_channels", 3), size, size), gen)
    if main == "input_features":
        frames = 2 * int(getattr(config, "max_source_positions", 1500))
        mels = int(getattr(config, "num_mel_bins", 80))
        out["input_features"] = _randn((1, mels, frames), gen)
        if getattr(config, "is_encoder_decoder", False):
            out["decoder_input_ids"] = torch.zeros(1, 4, dtype=torch.long)
    if main == "input_values":
        out["input_values"] = torch.randn(1, 16000, generator=gen)
    return out


def _randn(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    resprobe.ensure_fits(4 * math.prod(shape), f"an example input of shape {'x'.join(map(str, shape))}",
                         "check the sizes in config.json")
    return torch.randn(shape, generator=gen)


adapter = HFAdapter()


def __getattr__(name: str) -> Any:
    """``ResprobeTrainerCallback`` (a ``transformers.TrainerCallback``) is imported on first use,
    so ``import resprobe_hf`` does not import transformers."""
    if name == "ResprobeTrainerCallback":
        from .callback import ResprobeTrainerCallback

        return ResprobeTrainerCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
