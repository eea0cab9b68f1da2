"""resprobe adapter for torchvision's model zoo: ``torchvision:NAME``, random weights, no downloads."""

from __future__ import annotations

import difflib

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
        model = torchvision.models.get_model(name, weights=None).eval()
        return resprobe.Loaded(model, self._inputs(torchvision, name), "random",
                               f"torchvision {name} with random weights",
                               inputs_description="random inputs made by the adapter")

    @staticmethod
    def _inputs(torchvision: object, name: str) -> resprobe.Inputs:
        models = torchvision.models  # type: ignore[attr-defined]
        gen = torch.Generator().manual_seed(0)
        if name in models.list_models(module=models.video):
            return resprobe.Inputs((torch.randn(1, 3, 8, 112, 112, generator=gen),))
        if name in models.list_models(module=models.detection):
            return resprobe.Inputs(([torch.rand(3, 224, 224, generator=gen)],))
        if name in models.list_models(module=models.optical_flow):
            images = torch.rand(2, 1, 3, 128, 128, generator=gen)
            return resprobe.Inputs((images[0], images[1]))
        size = 299 if name.startswith("inception") else 224
        return resprobe.Inputs((torch.randn(1, 3, size, size, generator=gen),))


adapter = TorchvisionAdapter()
