"""resprobe adapter for timm: ``timm:NAME``, random weights, the model's default input size."""

from __future__ import annotations

import torch

import resprobe

__all__ = ["TimmAdapter", "adapter"]


class TimmAdapter:
    """``timm:convnext_tiny`` builds ``timm.create_model("convnext_tiny", pretrained=False)`` with
    a random example input of the model's default input size."""

    name = "timm"
    requires = ("timm",)
    install = "pip install timm"

    def build(self, name: str) -> resprobe.Loaded:
        import timm
        import timm.data

        if not timm.is_model(name):
            close = timm.list_models(f"*{name}*")[:3]
            hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models()"
            raise resprobe.SourceError(f"timm has no model {name!r}; {hint}")
        model = timm.create_model(name, pretrained=False).eval()
        size = timm.data.resolve_data_config({}, model=model)["input_size"]
        x = torch.randn(1, *size, generator=torch.Generator().manual_seed(0))
        return resprobe.Loaded(model, resprobe.Inputs((x,)), "random",
                               f"timm {name} with random weights, input {tuple(x.shape)}",
                               inputs_description="a random image batch made by the adapter")


adapter = TimmAdapter()
