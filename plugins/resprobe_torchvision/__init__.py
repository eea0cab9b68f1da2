"""resprobe adapter for torchvision's model zoo: ``torchvision:NAME``, random weights, no downloads."""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import torch

import resprobe

__all__ = ["TorchvisionAdapter", "adapter"]


class TorchvisionAdapter:
    """``torchvision:resnet50`` builds ``torchvision.models.get_model("resnet50", weights=None)``
    with a random example input of the size the model expects."""

    name = "torchvision"
    requires = ("torchvision",)
    install = "pip install torchvision"

    def build(self, name: str) -> resprobe.Loaded:
        import torchvision

        known = torchvision.models.list_models()
        if name not in known:
            close = difflib.get_close_matches(name, known, 3)
            hint = f"did you mean {', '.join(close)}?" if close else "see torchvision.models.list_models()"
            raise resprobe.SourceError(f"torchvision has no model {name!r}; {hint}")
        builder = torchvision.models.get_model_builder(name)
        takes = inspect.signature(builder).parameters
        extra = {"weights_backbone": None} if "weights_backbone" in takes else {}
        model = builder(weights=None, **extra).eval()  # nothing is downloaded, backbones included
        return resprobe.Loaded(model, self._inputs(torchvision, name), "random",
                               f"torchvision {name} with random weights",
                               inputs_description="random inputs made by the adapter")

    @staticmethod
    def _inputs(torchvision: object, name: str) -> resprobe.Inputs:
        models = torchvision.models  # type: ignore[attr-defined]
        gen = torch.Generator().manual_seed(0)
        meta = _meta(models, name)
        if name in models.list_models(module=models.video):
            frames = int(meta.get("min_temporal_size") or 8)
            side = max(112, *(int(v) for v in meta.get("min_size") or (112,)))
            return resprobe.Inputs((torch.randn(1, 3, frames, side, side, generator=gen),))
        if name in models.list_models(module=models.detection):
            return resprobe.Inputs(([torch.rand(3, 224, 224, generator=gen)],))
        if name in models.list_models(module=models.optical_flow):
            images = torch.rand(2, 1, 3, 128, 128, generator=gen)
            return resprobe.Inputs((images[0], images[1]))
        least = max(int(v) for v in meta.get("min_size") or (224,))
        size = 299 if name.startswith("inception") else max(224, least)
        return resprobe.Inputs((torch.randn(1, 3, size, size, generator=gen),))


def _meta(models: object, name: str) -> dict[str, Any]:
    """The model's own metadata (input sizes it needs), from its weights enum; none is loaded."""
    try:
        weights = list(models.get_model_weights(name))  # type: ignore[attr-defined]
    except (ValueError, KeyError):
        return {}
    return dict(weights[0].meta) if weights else {}


adapter = TorchvisionAdapter()
