"""The captum plugin: Integrated Gradients over branch gates, checked against closed forms."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import resprobe
from resprobe.examples import digits_resnet

pytest.importorskip("captum")

D, C = 5, 3


class LinearBlockClassifier(nn.Module):
    """logits = H (x + W x): the logits are linear in the branch gate, so the attribution of the
    block is exactly the change from deleting it, ``(H W x)[predicted class]``."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Linear(D, D, bias=False)
        self.head = nn.Linear(D, C)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(x + self.f(x))  # type: ignore[no-any-return]


def test_attribution_of_a_linear_block_is_its_exact_contribution() -> None:
    torch.manual_seed(0)
    model, x = LinearBlockClassifier(), torch.randn(4, D)
    report = resprobe.analyze(resprobe.Loaded(model, resprobe.Inputs((x,))), probes=("attribution",))
    result = report.result("attribution")
    assert result is not None and result.summary["score"] == "logit of the predicted class"
    with torch.no_grad():
        logits = model(x)
        predicted = logits.argmax(1)
        want = model.head.weight @ model.f(x).T  # [C, N]: H W x (the bias cancels)
        want = want.T.gather(1, predicted[:, None])[:, 0].mean().item()
    assert result.blocks["f"]["attribution"] == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert result.summary["convergence_delta"] == pytest.approx(0, abs=1e-5)


def test_attributions_sum_to_the_change_from_deleting_every_branch() -> None:
    loaded = digits_resnet()
    report = resprobe.analyze(loaded, probes=("attribution",))
    result = report.result("attribution")
    assert result is not None and len(result.blocks) == 6
    total = sum(v["attribution"] for v in result.blocks.values())
    s = result.summary
    change = s["score_all_on"] - s["score_all_off"]
    assert total == pytest.approx(change, rel=0.02)  # completeness, up to the quadrature error
    with torch.no_grad():  # "all on" is the model itself
        assert loaded.inputs is not None
        logits = loaded.model(*loaded.inputs.args)
        assert s["score_all_on"] == pytest.approx(logits.max(1).values.mean().item(), rel=1e-5)
