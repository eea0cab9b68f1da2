"""The public API is what resprobe/__init__.py re-exports, and nothing is defined there."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import resprobe

ROOT = Path(__file__).resolve().parents[1]


def test_init_only_imports_and_all_is_sorted() -> None:
    """resprobe/__init__.py defines nothing: it imports, names where each public name lives
    (``_LAZY``, read on first use so that ``import resprobe`` does not import torch), lists
    ``__all__`` and makes the package lazy. Type checkers see the same names under
    ``TYPE_CHECKING``."""
    tree = ast.parse((ROOT / "resprobe" / "__init__.py").read_text())
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    rest = [n for n in body if not isinstance(n, (ast.Import, ast.ImportFrom))]
    typing_only = [n for n in rest if isinstance(n, ast.If)]
    assert len(typing_only) == 1 and ast.unparse(typing_only[0].test) == "TYPE_CHECKING"
    assert not typing_only[0].orelse and all(isinstance(n, ast.ImportFrom) for n in typing_only[0].body)
    assigns = [n for n in rest if n not in typing_only]
    assert all(isinstance(a, ast.Assign) and len(a.targets) == 1 for a in assigns)
    assert [ast.unparse(a.targets[0]) for a in assigns if isinstance(a, ast.Assign)] == [
        "_LAZY", "__all__", "sys.modules[__name__].__class__"]
    typed = {(a.asname or a.name): "." * n.level + (n.module or "") + (f":{a.name}" if a.asname else "")
             for n in typing_only[0].body if isinstance(n, ast.ImportFrom) for a in n.names}
    lazy: dict[str, str] = vars(resprobe)["_LAZY"]
    assert typed == lazy
    assert resprobe.__all__ == sorted(resprobe.__all__) == sorted([*lazy, "__version__"])
    assert all(hasattr(resprobe, name) for name in resprobe.__all__)
    assert set(resprobe.__all__) <= set(dir(resprobe))


def test_import_is_lazy_and_functions_keep_their_module_names() -> None:
    """``import resprobe`` imports no torch; every public name resolves on first use, and the
    functions named like their own module (``resprobe.capture`` the function, in
    ``resprobe/capture.py``) stay the functions whichever is imported first."""
    shadowed = [n for n in resprobe.__all__ if (ROOT / "resprobe" / f"{n}.py").exists()]
    assert {"analyze", "capture", "lesion", "load", "measure"} <= set(shadowed)
    code = (
        "import importlib, inspect, sys\n"
        "import resprobe\n"
        "assert 'torch' not in sys.modules, 'import resprobe imported torch'\n"
        f"for name in {shadowed!r}:\n"
        "    module = importlib.import_module('resprobe.' + name)\n"
        "    assert inspect.isfunction(getattr(resprobe, name)), name\n"
        "    assert getattr(resprobe, name) is getattr(module, name), name\n"
        "import resprobe.measure as m\n"
        "assert m is resprobe.measure and inspect.isfunction(m)\n"
        "assert all(getattr(resprobe, n) is not None for n in resprobe.__all__)\n"
        "assert resprobe.report is sys.modules['resprobe.report']\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        resprobe.nothing_here  # type: ignore[attr-defined]  # noqa: B018


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
        "Adapter", "AnalysisError", "Block", "BlockCheck", "CaptureError", "Comparison", "DEFAULT_PROBES",
        "Data", "Exporter", "Gated", "Graph", "Inputs", "InputsError", "Loaded", "Measurement", "Node",
        "Objective", "Option", "PluginInfo", "Probe", "ProbeContext", "ProbeResult", "Registry", "Report",
        "ResprobeError", "Run", "RunStep", "Settings", "SourceError", "Stream", "UsageError",
        "VerificationError", "Watch", "__version__", "analyze", "capture", "choose_objective",
        "compare_reports", "ensure_fits", "exact_profile", "example_data", "find_blocks", "gated",
        "graph_dot", "infer_inputs", "lesion", "load", "load_data", "load_inputs", "main_output", "measure",
        "read_run", "refinement_dot", "render_dot", "report_html", "sample_profile", "streams",
        "verify_blocks", "watch",
    ]
    signatures = {
        "analyze": "(model, inputs=None, *, probes=('verify', 'refinement', 'gradients', 'depth', "
                   "'lesion', 'lens'), plugins=None, data=None, objective=None, settings=None, "
                   "progress=None)",
        "capture": "(model, inputs=None, *, grad=False, train=False)",
        "verify_blocks": "(model, inputs, graph, blocks, *, strict=True, train=False)",
        "load": "(source, *, arch=None, trust=False, plugins=None, seed=0, meta=False)",
        "find_blocks": "(graph)",
        "watch": "(model, *, every=50, log_dir=None, probes=('refinement', 'gradients'), optimizer=None, "
                 "tensorboard=None, settings=None, start=0, scaler=None, iterative=False)",
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
