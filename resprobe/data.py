"""Data to measure on: the source's example inputs, or ``--data`` (a tensor file, an image
folder, a text file tokenized with the model's own tokenizer), cut into batches."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ._memory import ensure_fits
from .errors import InputsError
from .inputs import Inputs, nbytes

__all__ = ["Data", "batch_size", "example_data", "load_data"]

Batch = tuple[Inputs, Any]  # inputs and targets (None when the data has none)
_MAX_TEXT = 64 << 20  # a text file to measure on: far more lines than anyone measures
_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")
_IMAGES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Data:
    """Batches of (inputs, targets) and what they are, for the report."""

    kind: str  # "example" | "tensors" | "images" | "text"
    description: str
    samples: int
    batch_size: int
    make: Callable[[], Iterator[Batch]]

    @property
    def batches(self) -> int:
        return max(1, math.ceil(self.samples / self.batch_size)) if self.samples else 1

    def __iter__(self) -> Iterator[Batch]:
        return self.make()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "description": self.description, "samples": self.samples,
                "batch_size": self.batch_size, "batches": self.batches}


def example_data(inputs: Inputs, description: str = "the source's example inputs") -> Data:
    """One batch: the example inputs (no targets)."""
    n = _batch_size(inputs)
    return Data("example", description, n, max(n, 1), lambda: iter([(inputs, None)]))


def load_data(path: str, like: Inputs, *, tokenizer: Any = None, batch_size: int = 8,
              max_samples: int | None = None) -> Data:
    """Read ``path``: a file saved with ``torch.save`` (a tensor, ``(inputs, targets)``, or a
    dict of named inputs where ``labels``/``targets`` are targets), a folder of images (one
    sub-folder per class gives targets), or a ``.txt`` file, one sample per line, tokenized
    with ``tokenizer``. ``like`` (the example inputs) gives image size and input names."""
    if batch_size < 1:
        raise InputsError(f"--batch-size must be at least 1, got {batch_size}")
    p = Path(path)
    if p.is_dir():
        inputs, targets, what = _images(p, like, max_samples)
        kind = "images"
    elif p.suffix.lower() == ".txt":
        inputs, targets, what = _text(p, like, tokenizer, max_samples)
        kind = "text"
    elif p.is_file():
        inputs, targets, what = _tensors(p, like)
        kind = "tensors"
    else:
        raise InputsError(f"--data {path}: no such file or folder")
    n = _batch_size(inputs)
    if max_samples is not None:
        n = min(n, max_samples)
    if n < 1:
        raise InputsError(f"--data {path} holds no samples")
    desc = f"{what} from {path}" + (f" (first {n})" if max_samples is not None and n == max_samples else "")

    def make() -> Iterator[Batch]:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            t = None if targets is None else targets[start:stop]
            yield _slice(inputs, start, stop), t

    return Data(kind, desc, n, batch_size, make)


def batch_size(inputs: Inputs) -> int:
    """The number of samples in ``inputs``: the first dimension of its first batched tensor."""
    return _batch_size(inputs)


def _batch_size(inputs: Inputs) -> int:
    for _, v in inputs.named():
        if isinstance(v, Tensor) and v.dim():
            return int(v.shape[0])
    return 1


def _slice(inputs: Inputs, start: int, stop: int) -> Inputs:
    def cut(v: Any) -> Any:
        return v[start:stop] if isinstance(v, Tensor) and v.dim() else v
    return Inputs(tuple(cut(a) for a in inputs.args), {k: cut(v) for k, v in inputs.kwargs.items()})


def _tensors(p: Path, like: Inputs) -> tuple[Inputs, Any, str]:
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputsError(f"--data {p}: not a tensor file saved with torch.save ({type(err).__name__}); "
                          "save a tensor, a tuple (inputs, targets), or a dict of named inputs") from err
    targets: Any = None
    if isinstance(obj, Mapping):
        obj = dict(obj)
        for key in ("targets", "labels", "target", "label"):
            if key in obj:
                targets = obj.pop(key)
                break
        if set(obj) == {"inputs"}:
            obj = obj["inputs"]
    elif isinstance(obj, (tuple, list)) and len(obj) == 2 and all(isinstance(v, Tensor) for v in obj):
        obj, targets = obj
    if isinstance(obj, Tensor):
        inputs = Inputs((obj,))
    elif isinstance(obj, Mapping) and all(isinstance(v, Tensor) for v in obj.values()):
        inputs = Inputs((), dict(obj)) if like.kwargs or not like.args else Inputs(tuple(obj.values()))
    elif isinstance(obj, (tuple, list)) and all(isinstance(v, Tensor) for v in obj):
        inputs = Inputs(tuple(obj))
    else:
        raise InputsError(f"--data {p} holds {type(obj).__name__}; save a tensor, a tuple "
                          "(inputs, targets), or a dict of named input tensors")
    _check_tensors(p, inputs, targets)
    what = "tensors" + (" with targets" if targets is not None else "")
    return inputs, targets, what


def _check_tensors(p: Path, inputs: Inputs, targets: Any) -> None:
    """Sizes as they will be materialised (a stride-0 ``expand`` is small on disk only), and
    targets that are one tensor with one entry per sample."""
    ensure_fits(nbytes(inputs), f"--data {p}", "pass a smaller file")
    if targets is None:
        return
    n = _batch_size(inputs)
    if not isinstance(targets, Tensor) or not targets.dim() or targets.shape[0] != n:
        what = f"shape {tuple(targets.shape)}" if isinstance(targets, Tensor) else type(targets).__name__
        raise InputsError(f"--data {p}: the targets ({what}) must be a tensor with one entry for each of "
                          f"the {n} samples")


def _images(p: Path, like: Inputs, limit: int | None = None) -> tuple[Inputs, Any, str]:
    try:
        from PIL import Image
    except ImportError:
        raise InputsError("reading an image folder needs Pillow: pip install pillow") from None
    template = next((v for _, v in like.named() if isinstance(v, Tensor) and v.dim() == 4), None)
    if template is None:
        raise InputsError(f"--data {p} is an image folder, but the model's example input is not a "
                          "4-D image batch; pass a tensor file instead")
    files = sorted(f for f in p.rglob("*") if f.suffix.lower() in _IMAGES)
    if not files:
        raise InputsError(f"--data {p}: the folder holds no images ({', '.join(_IMAGES)})")
    channels, height, width = template.shape[1:]
    classes = sorted({f.parent.name for f in files}) if all(f.parent != p for f in files) else []
    files = files[:limit] if limit is not None else files  # read only what will be used
    ensure_fits(4 * len(files) * channels * height * width, f"--data {p} ({len(files)} images)",
                "pass --max-samples, or a smaller folder")
    images = [_image(Image, f, channels, height, width) for f in files]
    batch = torch.stack(images).to(template.dtype)
    targets = torch.tensor([classes.index(f.parent.name) for f in files]) if classes else None
    what = f"{len(files)} images resized to {height}x{width}, scaled to [0, 1]" + (
        f", {len(classes)} classes from sub-folders" if classes else "")
    return Inputs((batch,)), targets, what


def _image(image: Any, f: Path, channels: int, height: int, width: int) -> Tensor:
    """One image file as a (channels, height, width) tensor in [0, 1]; a file that is not an
    image, or one that would decompress to more pixels than Pillow allows, is bad input."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", image.DecompressionBombWarning)
            with image.open(f, formats=_FORMATS) as im:  # never PostScript (EPS runs Ghostscript)
                im = im.convert("L" if channels == 1 else "RGB").resize((width, height))
    except (image.DecompressionBombError, image.DecompressionBombWarning) as err:
        raise InputsError(f"--data {f}: refused, the image is too large to decode safely ({err}); "
                          "remove it or shrink it") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise InputsError(f"--data {f} is not a readable image ({type(err).__name__}); remove it from "
                          "the folder") from None
    t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    return t.reshape(height, width, -1).permute(2, 0, 1).float() / 255


def _text(p: Path, like: Inputs, tokenizer: Any, limit: int | None = None) -> tuple[Inputs, Any, str]:
    if not p.is_file():
        raise InputsError(f"--data {p}: no such file")
    if tokenizer is None:
        raise InputsError(f"--data {p} is text, but the source has no tokenizer; use an hf:DIR source "
                          "whose folder holds the tokenizer files, or pass token ids as a tensor file")
    if p.stat().st_size > _MAX_TEXT:
        raise InputsError(f"--data {p} is larger than {_MAX_TEXT >> 20} MB of text; pass a smaller file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputsError(f"--data {p} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()][:limit]
    if not lines:
        raise InputsError(f"--data {p} holds no text")
    enc = tokenizer(lines, padding=True, truncation=True, max_length=128, return_tensors="pt")
    names = set(like.kwargs) or {"input_ids", "attention_mask"}
    kwargs = {k: v for k, v in dict(enc).items() if k in names}
    return Inputs((), kwargs), None, f"{len(lines)} lines tokenized with the model's tokenizer"
