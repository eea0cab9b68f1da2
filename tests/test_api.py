"""The public API is what resprobe/__init__.py re-exports, and nothing is defined there."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import resprobe

ROOT = Path(__file__).resolve().parents[1]


def test_init_only_imports_and_all_is_sorted() -> None:
    tree = ast.parse((ROOT / "resprobe" / "__init__.py").read_text())
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    assigns = [n for n in body if not isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [a.targets[0].id for a in assigns if isinstance(a, ast.Assign)] == ["__all__"]
    assert len(assigns) == 1
    assert resprobe.__all__ == sorted(resprobe.__all__)
    assert all(hasattr(resprobe, name) for name in resprobe.__all__)


def test_library_code_never_prints() -> None:
    for path in (ROOT / "resprobe").glob("*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        calls = [n for n in ast.walk(ast.parse(path.read_text()))
                 if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
        assert not calls, f"{path.name} prints"


def test_detection_is_torch_free() -> None:
    for name in ("graph.py", "blocks.py", "_dataflow.py", "_naming.py", "_opclass.py"):
        tree = ast.parse((ROOT / "resprobe" / name).read_text())
        mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(m == "torch" or m.startswith("torch.") for m in mods), name


def test_the_public_names_are_pinned() -> None:
    """Adding or removing a public name, or changing the first call's signature, is a decision:
    this list changes with it."""
    assert resprobe.__all__ == [
        "Adapter", "AnalysisError", "Block", "BlockCheck", "CaptureError", "DEFAULT_PROBES", "Data",
        "Exporter", "Gated", "Graph", "Inputs", "InputsError", "Loaded", "Measurement", "Node",
        "Objective", "PluginInfo", "Probe", "ProbeContext", "ProbeResult", "Registry", "Report",
        "ResprobeError", "Settings", "SourceError", "Stream", "UsageError", "VerificationError",
        "__version__", "analyze", "capture", "choose_objective", "ensure_fits", "exact_profile",
        "example_data", "find_blocks", "gated", "graph_dot", "infer_inputs", "lesion", "load",
        "load_data", "load_inputs", "main_output", "measure", "refinement_dot", "render_dot",
        "report_html", "sample_profile", "streams", "verify_blocks",
    ]
    signatures = {
        "analyze": "(model, inputs=None, *, probes=('verify', 'refinement', 'gradients', 'depth', "
                   "'lesion'), plugins=None, data=None, objective=None, settings=None, progress=None)",
        "capture": "(model, inputs=None, *, grad=False, train=False)",
        "verify_blocks": "(model, inputs, graph, blocks, *, strict=True, train=False)",
        "load": "(source, *, arch=None, trust=False, plugins=None, seed=0)",
        "find_blocks": "(graph)",
    }
    for name, want in signatures.items():
        sig = inspect.signature(getattr(resprobe, name))
        plain = sig.replace(parameters=[p.replace(annotation=inspect.Parameter.empty)
                                        for p in sig.parameters.values()],
                            return_annotation=inspect.Signature.empty)
        assert str(plain) == want, name


def _natural_cases() -> list[tuple[str, Callable[[], tuple[torch.nn.Module, object]], int]]:
    def torchvision_resnet() -> tuple[torch.nn.Module, object]:
        tv = pytest.importorskip("torchvision")
        return tv.models.resnet18(), torch.randn(1, 3, 64, 64)

    def timm_vit() -> tuple[torch.nn.Module, object]:
        timm = pytest.importorskip("timm")
        return timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2, img_size=32,
                                 patch_size=8), torch.randn(1, 3, 32, 32)

    def hf_gpt2() -> tuple[torch.nn.Module, object]:
        transformers = pytest.importorskip("transformers")
        config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32)
        ids = torch.randint(0, 64, (1, 8))
        return transformers.GPT2LMHeadModel(config), {"input_ids": ids}

    return [("torchvision", torchvision_resnet, 8), ("timm", timm_vit, 4), ("transformers", hf_gpt2, 4)]


@pytest.mark.zoo
@pytest.mark.parametrize(("zoo", "make", "blocks"), _natural_cases(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_the_natural_first_call(zoo: str, make: Callable[[], tuple[torch.nn.Module, object]],
                                blocks: int) -> None:
    """``resprobe.analyze(model, example_inputs)`` with the model in hand, and the same model
    through capture and verify_blocks."""
    torch.manual_seed(0)
    model, inputs = make()
    report = resprobe.analyze(model, inputs)
    assert len(report.blocks) == blocks and report.model["class"] == type(model).__name__
    assert all(b["metrics"]["verify"]["ok"] for b in report.blocks)
    assert all(b["metrics"]["gradients"]["branch_gain"] is not None for b in report.blocks)
    graph = resprobe.capture(model, inputs)
    checks = resprobe.verify_blocks(model, inputs, graph, resprobe.find_blocks(graph))
    assert len(checks) == blocks and all(c.ok for c in checks)


def test_a_model_that_is_not_one_says_what_to_pass() -> None:
    with pytest.raises(resprobe.UsageError, match="pass a torch.nn.Module"):
        resprobe.analyze("torchvision:resnet18")  # type: ignore[arg-type]
    with pytest.raises(resprobe.UsageError, match="needs example inputs"):
        resprobe.analyze(torch.nn.Sequential(torch.nn.ReLU()))


def test_every_per_block_number_is_in_the_metric_catalogue() -> None:
    """The statistics, the probes and the renderers name metrics from one catalogue: whatever
    the refinement and gradients probes report per block is defined there, and nothing else."""
    from resprobe.metrics import CATALOGUE, of_probe
    from resprobe.render.html import COLUMNS
    from resprobe.render.refinement import METRICS

    report = resprobe.analyze(resprobe.load("resprobe.examples:digits_resnet"),
                              probes=("refinement", "gradients", "lesion"))
    for probe in ("refinement", "gradients"):
        result = report.result(probe)
        assert result is not None
        for values in result.blocks.values():
            assert set(values) - {"samples"} == set(of_probe(probe)), probe
    known = {(m.probe, m.key) for m in CATALOGUE}
    assert {(c[1], c[2]) for c in COLUMNS} <= known and {(p, k) for p, k, _, _ in METRICS.values()} <= known
