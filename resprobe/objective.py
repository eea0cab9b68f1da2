"""The objective a gradient is taken of: one loss per sample, chosen from the output and data.

``auto`` picks, in order: the task loss when the data carries targets (cross-entropy for
integer targets, mean squared error for float ones); cross-entropy against the model's own
prediction for a classifier (output ``[N, C]``); next-token cross-entropy on the input for a
language model (an output named ``logits``, or one as wide as an embedding table, shaped
``[N, T, V]`` like ``input_ids``, or ``decoder_input_ids`` for an encoder-decoder);
otherwise a fixed random linear readout of the output (``projection``: each position's
feature vector dotted with one seeded random direction, averaged over positions; unlike
the mean square, it stays informative after a final LayerNorm, whose output has a fixed
norm). Per-sample losses are summed, so gradient
statistics do not depend on the batch size.

torch is imported on first use: the names (``NAMES``) and the types are read by the CLI's
``--help``, which does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from .errors import InputsError, UsageError

if TYPE_CHECKING:
    from torch import Tensor, nn

    from .inputs import Inputs

__all__ = ["NAMES", "Objective", "ObjectiveFn", "ObjectiveSpec", "choose_objective", "main_output"]

NAMES = ("auto", "task", "self-ce", "next-token", "projection", "square")
ObjectiveFn: TypeAlias = Callable[[Any, "Inputs", Any], "Tensor"]


@dataclass(frozen=True)
class Objective:
    """A named objective: ``fn(output, inputs, targets)`` returns one loss per sample."""

    name: str
    description: str
    fn: ObjectiveFn

    def __call__(self, output: Any, inputs: Inputs, targets: Any) -> Tensor:
        """``fn(output, inputs, targets)``: an ``Objective`` is itself an objective callable."""
        return self.fn(output, inputs, targets)

    def losses(self, output: Any, inputs: Inputs, targets: Any) -> Tensor:
        from torch import Tensor

        value = self.fn(output, inputs, targets)
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise UsageError(f"objective {self.name!r} returned {type(value).__name__}, not a float "
                             "tensor; it must return one loss per sample (or a scalar)")
        return value.float().reshape(-1)


ObjectiveSpec: TypeAlias = str | ObjectiveFn | Objective | None
"""What an objective is given as: a name in ``NAMES`` (None = ``auto``), a callable
``(output, inputs, targets) -> losses``, or an ``Objective`` already chosen."""


def main_output(output: Any) -> Tensor:
    """The tensor an objective reads: the output itself, ``.logits``, or the first tensor."""
    from torch import Tensor

    if isinstance(output, Tensor):
        return output
    logits = output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    values = output.values() if isinstance(output, Mapping) else output if isinstance(
        output, (list, tuple)) else ()
    for v in values:
        if isinstance(v, Tensor) and v.is_floating_point():
            return v
        if isinstance(v, (list, tuple, Mapping)):
            try:
                return main_output(v)
            except InputsError:
                continue
    raise InputsError(f"the model returned {type(output).__name__} with no float tensor to take "
                      "an objective of; pass an objective callable")


def _task(output: Any, inputs: Inputs, targets: Any) -> Tensor:
    import torch.nn.functional as F
    from torch import Tensor

    out = main_output(output)
    t = targets.to(out.device) if isinstance(targets, Tensor) else targets
    if not isinstance(t, Tensor):
        raise InputsError("the data's targets are not a tensor")
    if t.is_floating_point():
        if t.numel() != out.numel():
            raise InputsError(f"float targets of shape {tuple(t.shape)} do not fit output {tuple(out.shape)}")
        return 0.5 * (out.float() - t.float().reshape(out.shape)).pow(2).reshape(out.shape[0], -1).mean(1)
    if out.dim() == t.dim() + 1:
        kept = t[t != -100]
        if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= out.shape[-1]):
            raise InputsError(f"class targets run from {int(kept.min())} to {int(kept.max())}, but the model "
                              f"gives {out.shape[-1]} classes; check the data's labels")
        ce = F.cross_entropy(out.float().movedim(-1, 1) if out.dim() > 2 else out.float(), t.long(),
                             reduction="none", ignore_index=-100)
        return ce.reshape(out.shape[0], -1).mean(1)
    raise InputsError(f"targets of shape {tuple(t.shape)} do not fit output {tuple(out.shape)}")


def _self_ce(output: Any, inputs: Inputs, targets: Any) -> Tensor:
    import torch.nn.functional as F

    out = main_output(output).float()
    return F.cross_entropy(out, out.detach().argmax(-1), reduction="none")


def _next_token(output: Any, inputs: Inputs, targets: Any) -> Tensor:
    import torch.nn.functional as F

    logits = main_output(output).float()
    ids = _input_ids(inputs)
    if ids is None:
        raise InputsError("next-token loss needs an input_ids input")
    ce = F.cross_entropy(logits[:, :-1].movedim(-1, 1), ids[:, 1:].to(logits.device).long(), reduction="none")
    keep = _keep(inputs, logits.shape[:2])
    return ce.mean(1) if keep is None else _masked_mean(ce, keep[:, 1:] * keep[:, :-1])


def _square(output: Any, inputs: Inputs, targets: Any) -> Tensor:
    out = main_output(output).float()
    return 0.5 * out.pow(2).reshape(out.shape[0], -1).mean(1) if out.dim() else 0.5 * out.pow(2).reshape(1)


_DIRECTIONS: dict[tuple[int, str], Tensor] = {}


def _projection(output: Any, inputs: Inputs, targets: Any) -> Tensor:
    import torch

    out = main_output(output).float()
    if out.dim() < 2:
        return out.reshape(1, -1).sum(1)
    dim = 1 if out.dim() >= 4 else out.dim() - 1  # channels of a conv map, else the last axis
    key = (out.shape[dim], str(out.device))
    if key not in _DIRECTIONS:
        r = torch.randn(out.shape[dim], generator=torch.Generator().manual_seed(0)) / out.shape[dim] ** 0.5
        _DIRECTIONS[key] = r.to(out.device)
    r = _DIRECTIONS[key].reshape([-1 if k == dim else 1 for k in range(out.dim())])
    read = (out * r).sum(dim)
    keep = _keep(inputs, read.shape) if read.dim() == 2 else None
    return read.reshape(out.shape[0], -1).mean(1) if keep is None else _masked_mean(read, keep)


def _keep(inputs: Inputs, shape: Any) -> Tensor | None:
    """1 at real tokens, 0 at padding, from the inputs' attention mask (the decoder's for an
    encoder-decoder) when it has the output's ``[batch, positions]`` shape and holds padding."""
    import torch
    from torch import Tensor

    name = "decoder_attention_mask" if "decoder_input_ids" in inputs.kwargs else "attention_mask"
    mask = inputs.kwargs.get(name)
    if not isinstance(mask, Tensor) or tuple(mask.shape) != tuple(shape):
        return None
    keep = (mask > 0) if mask.dtype != torch.bool else mask
    if mask.is_floating_point() and bool((mask <= 0).all()):  # additive: 0 keeps, -inf drops
        keep = mask == 0
    return None if bool(keep.all()) else keep.float()


def _masked_mean(values: Tensor, keep: Tensor) -> Tensor:
    keep = keep.to(values.device)
    return (values * keep).sum(1) / keep.sum(1).clamp_min(1)


def _input_ids(inputs: Inputs) -> Tensor | None:
    """The token ids the logits predict: ``decoder_input_ids`` for an encoder-decoder, else
    ``input_ids`` (or a first positional integer tensor)."""
    from torch import Tensor

    ids = inputs.kwargs.get("decoder_input_ids")
    ids = ids if ids is not None else inputs.kwargs.get("input_ids")
    first = inputs.args[0] if inputs.args else None
    if ids is None and isinstance(first, Tensor) and not first.is_floating_point():
        ids = first
    return ids if isinstance(ids, Tensor) and ids.dim() == 2 else None


_BUILTIN: dict[str, tuple[str, ObjectiveFn]] = {
    "task": ("task loss against the data's targets", _task),
    "self-ce": ("cross-entropy against the model's own prediction", _self_ce),
    "next-token": ("next-token cross-entropy on the input", _next_token),
    "projection": ("a fixed random linear readout of the output (seed 0)", _projection),
    "square": ("half the mean square of the output (its gradient is the output)", _square),
}


def choose_objective(spec: ObjectiveSpec, output: Any, inputs: Inputs, targets: Any,
                     model: nn.Module | None = None) -> Objective:
    """The objective for ``spec``: a name in ``NAMES`` (``None`` = ``auto``), a callable
    ``(output, inputs, targets) -> losses`` returning one loss per sample (or a scalar), or an
    ``Objective``, returned as it is (chosen once, e.g. by ``resprobe.ProbeContext``). Only
    ``auto`` reads ``output``, ``inputs`` and ``targets``; ``model`` tells it the vocabulary
    sizes (a plain-tensor output of that width is read as logits)."""
    if isinstance(spec, Objective):
        return spec
    if callable(spec):
        return Objective(getattr(spec, "__name__", "custom"), "a user-supplied callable", spec)
    name = spec or "auto"
    if name not in NAMES:
        raise UsageError(f"unknown objective {name!r}; use one of {', '.join(NAMES)} or a callable")
    if name == "auto":
        from torch import nn

        vocab = {m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)} if model else set()
        name = _auto(output, inputs, targets, vocab)
    description, fn = _BUILTIN[name]
    return Objective(name, description, fn)


def _auto(output: Any, inputs: Inputs, targets: Any, vocab: set[int]) -> str:
    if targets is not None:
        return "task"
    try:
        out = main_output(output)
    except InputsError:
        return "projection"
    ids = _input_ids(inputs)
    named = isinstance(output, Mapping) and "logits" in output or hasattr(output, "logits")
    if out.dim() == 3 and ids is not None and out.shape[:2] == ids.shape and (
            named or out.shape[-1] in vocab) and out.shape[-1] > int(ids.max()):
        return "next-token"  # logits over a vocabulary that holds every input id
    if out.dim() == 2 and out.shape[-1] > 1:
        return "self-ce"
    return "projection"
