"""resprobe adapter for Hugging Face transformers: ``hf:PATH``, a local directory with
config.json (weights optional: random initialisation when there are none)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import resprobe

__all__ = ["HFAdapter", "adapter"]

_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
            "pytorch_model.bin.index.json")


class HFAdapter:
    """``hf:./my-model`` builds ``transformers.AutoModel`` from the directory, offline, with
    example inputs made from its config (token ids and an attention mask, pixel values, …)."""

    name = "hf"
    requires = ("transformers",)
    install = "pip install transformers"

    def build(self, name: str) -> resprobe.Loaded:
        import transformers

        path = Path(name).expanduser()
        if not (path / "config.json").is_file():
            raise resprobe.SourceError(
                f"hf:{name} needs a local directory holding config.json; "
                f"{'it has none' if path.is_dir() else 'no such directory'} (models are never downloaded)")
        try:
            config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
        except Exception as err:
            raise resprobe.SourceError(f"hf:{name}: config.json could not be read ({err})") from err
        files = [f for f in _WEIGHTS if (path / f).exists()]
        if files:
            model = transformers.AutoModel.from_pretrained(path, local_files_only=True)
            weights, how = "unknown", f"weights from {files[0]}"
        else:
            model = transformers.AutoModel.from_config(config)
            weights, how = "random", "random weights (the directory holds none)"
        model.eval()
        return resprobe.Loaded(model, resprobe.Inputs((), _inputs(model, config)), weights,
                               f"transformers {type(model).__name__} from {path}, {how}",
                               inputs_description="random inputs made by the adapter from the config",
                               tokenizer=_tokenizer(transformers, path))


def _tokenizer(transformers: Any, path: Path) -> Any:
    """The folder's own tokenizer, or None when it holds no tokenizer files."""
    if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")):
        return None
    try:
        return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
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
        out["pixel_values"] = torch.randn(1, getattr(vision, "num_channels", 3), size, size, generator=gen)
    if main == "input_features":
        frames = 2 * int(getattr(config, "max_source_positions", 1500))
        mels = int(getattr(config, "num_mel_bins", 80))
        out["input_features"] = torch.randn(1, mels, frames, generator=gen)
        if getattr(config, "is_encoder_decoder", False):
            out["decoder_input_ids"] = torch.zeros(1, 4, dtype=torch.long)
    if main == "input_values":
        out["input_values"] = torch.randn(1, 16000, generator=gen)
    return out


adapter = HFAdapter()
