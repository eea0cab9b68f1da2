"""The click CLI: output, JSON, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from resprobe.cli import main


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_blocks_on_the_bundled_example() -> None:
    code, out, err = run("blocks")
    assert code == 0, err
    assert "6 residual block(s) on 1 stream(s)" in out and "verified 6/6" in out
    assert "layers.3  projection" in out
    assert "capturing one forward pass" in err


def test_blocks_json() -> None:
    code, out, _ = run("blocks", "--json", "-q")
    assert code == 0
    data = json.loads(out)
    assert [d["step"] for d in data] == [1, 2, 3, 4, 5, 6]
    assert {d["skip"] for d in data} == {"identity", "projection"}
    assert all(d["verified"] is True and d["stream"] == 0 for d in data)
    assert data[0]["branch_modules"] == ["layers.0.conv1", "layers.0.bn1", "layers.0.conv2",
                                         "layers.0.bn2"]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "mymodels.py").write_text(
        "import torch\n"
        "from torch import nn\n"
        "class M(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.f = nn.Linear(4, 4)\n"
        "    def forward(self, x):\n"
        "        return x + self.f(x)\n"
        "class P(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.w = nn.Parameter(torch.ones(4))\n"
        "    def forward(self, x):\n"
        "        return x * self.w\n"
        "def bare():\n    return M()\n"
        "def opaque():\n    return P()\n"
        "def boom():\n    raise ValueError('no config')\n"
        "def wrong():\n    return 42\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_source_from_the_current_directory_with_input_shape(project: Path) -> None:
    code, out, err = run("blocks", "mymodels:bare", "--input-shape", "2x4", "-q")
    assert code == 0, err
    assert "1 residual block(s)" in out and "\n0       1     f  " in out


@pytest.mark.parametrize(("args", "message"), [
    (["mymodels:opaque"], "supplied no example inputs and none could be inferred"),
    (["mymodels:boom"], "calling mymodels:boom() failed: ValueError: no config"),
    (["mymodels:wrong"], "returned int; it must return an nn.Module"),
    (["mymodels:missing"], "has no attribute 'missing'"),
    (["nosuchpkg.models:build"], "cannot import 'nosuchpkg.models'"),
    (["model.pt"], "no such file: model.pt"),
    (["mymodels"], "no such file: mymodels"),
    (["mymodels:bare", "--input-shape", "2xfour"], "bad input shape '2xfour'"),
    (["mymodels:bare", "--input-shape", "2x4:complex7"], "unknown dtype 'complex7'"),
])
def test_bad_input_is_one_line_and_exit_2(project: Path, args: list[str], message: str) -> None:
    code, out, err = run("blocks", *args, "-q")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_analysis_failure_is_exit_1_and_debug_shows_the_traceback(project: Path) -> None:
    code, _, err = run("blocks", "mymodels:bare", "--input-shape", "2x5", "-q")
    assert code == 1
    assert "failed in module 'f' at torch.nn.functional.linear" in err
    assert "Traceback" not in err and "--debug" in err
    code, _, err = run("--debug", "blocks", "mymodels:bare", "--input-shape", "2x5", "-q")
    assert code == 1 and "Traceback" in err


def test_python_dash_m_and_help() -> None:
    done = subprocess.run([sys.executable, "-m", "resprobe", "blocks", "--help"],
                          capture_output=True, text=True, check=True)
    assert "package.module:callable" in done.stdout and "--input-shape" in done.stdout
    assert "torchvision:NAME" in done.stdout
    code, out, _ = run("--version")
    assert code == 0 and "resprobe" in out


def test_analyze_with_no_source_writes_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run("analyze")
    assert code == 0, err
    assert "DigitsResNet (trained weights): 6 residual block(s) on 1 stream(s)" in out
    assert "verified 6/6" in out and "wrote resprobe-report/report.json" in out
    data = json.loads((tmp_path / "resprobe-report" / "report.json").read_text())
    assert data["model"]["weights"] == "trained" and len(data["blocks"]) == 6


def test_failures_leave_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for args, code_wanted in [(["nope.pt"], 2), (["torchvision:resnet18", "--input-shape", "1x3x2x2x2"], 1),
                              (["--format", "nosuch"], 2), (["torchvision:resnot"], 2)]:
        code, _, err = run("analyze", *args, "-q")
        assert code == code_wanted, err
        assert err.count("\n") == 1 and err.startswith("error: ")
    assert list(tmp_path.iterdir()) == []


def test_disable_plugin_flag() -> None:
    code, out, _ = run("--disable-plugin", "timm", "plugins")
    assert code == 0 and "timm" in out and "disabled" in out
    code, _, err = run("--disable-plugin", "timm", "blocks", "timm:resnet18", "-q")
    assert code == 2 and "is disabled" in err


def test_plugins_command_lists_kind_and_distribution() -> None:
    code, out, _ = run("plugins")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["name", "kind", "distribution", "status"]
    assert any(line.split()[:4] == ["torchvision", "adapter", "resprobe", "0.1.0"] for line in lines)
    assert any(line.split()[:2] == ["json", "exporter"] for line in lines)


def test_graph_command(tmp_path: Path) -> None:
    code, out, _ = run("graph", "-o", str(tmp_path / "g.json"), "-q")
    assert code == 0 and "50 nodes" in out
    assert len(json.loads((tmp_path / "g.json").read_text())["nodes"]) == 50
    code, _, _ = run("graph", "-o", str(tmp_path / "g.dot"), "-q")
    dot = (tmp_path / "g.dot").read_text()
    assert code == 0 and dot.startswith('digraph "DigitsResNet"') and "step 6" in dot
    code, _, err = run("graph", "-o", str(tmp_path / "g.svg"), "-q")  # dot, or graphviz-pure from PyPI
    assert code == 0 and (tmp_path / "g.svg").read_text().lstrip().startswith("<")
    code, _, _ = run("graph", "-o", str(tmp_path / "g.png"), "-q")
    assert code == 0 and (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run("graph", "-o", str(tmp_path / "g.txt"), "-q")
    assert code == 2 and "use a .json, .dot" in err


def test_the_installed_console_script(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "resprobe"
    assert exe.exists()
    done = subprocess.run([str(exe), "analyze", "-o", str(tmp_path / "r"), "-q"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "wrote" in done.stdout and done.stderr == ""
    torch_file = tmp_path / "sd.pt"
    import torch

    from resprobe.examples import DigitsResNet

    torch.save(DigitsResNet().state_dict(), torch_file)
    done = subprocess.run([str(exe), "blocks", str(torch_file), "-q"], capture_output=True, text=True)
    assert done.returncode == 2 and "pass --arch SOURCE" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([str(exe), "blocks", str(torch_file), "--arch", "resprobe.examples:DigitsResNet",
                           "--input-shape", "1x1x8x8", "-q"], capture_output=True, text=True)
    assert done.returncode == 0 and "6 residual block(s)" in done.stdout


def test_no_layout_program_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import resprobe.render.dot as dot

    monkeypatch.setattr(dot, "renderer", lambda: None)
    code, _, err = run("graph", "-o", str(tmp_path / "g.svg"), "-q")
    assert code == 2 and "pip install graphviz-pure" in err and err.count("error:") == 1
    assert not (tmp_path / "g.svg").exists()


def test_help_and_version_import_no_torch() -> None:
    """``--version`` and every ``--help`` (the probes' options included) are read without
    importing torch or a zoo: they take a fraction of a second, not seconds."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from resprobe.cli import main\n"
        "assert 'torch' not in sys.modules, 'import resprobe.cli imported torch'\n"
        "for args in (['--version'], ['--help'], ['analyze', '--help'], ['blocks', '--help'],\n"
        "             ['graph', '--help'], ['plugins', '--help']):\n"
        "    result = CliRunner().invoke(main, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "    if args[0] == 'analyze':\n"
        "        assert '--max-length K' in result.output and '--lesion-module NAME' in result.output\n"
        "heavy = [m for m in ('torch', 'torchvision', 'timm', 'transformers', 'captum', 'networkx')\n"
        "         if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    exe = Path(sys.executable).parent / "resprobe"
    done = subprocess.run([sys.executable, "-X", "importtime", str(exe), "--version"], capture_output=True,
                          text=True)
    assert done.returncode == 0 and "resprobe, version" in done.stdout
    assert "| torch\n" not in done.stderr and " torch\n" not in done.stderr


def test_probe_options_are_declared_by_the_probes_and_set_the_settings(tmp_path: Path) -> None:
    """Each built-in probe declares its options (``probe.options``); their defaults are the
    ``Settings`` defaults, and their values reach the probe through ``Settings``."""
    import dataclasses
    import importlib

    from resprobe import DEFAULT_PROBES, Registry, Settings

    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    probes = Registry().of_kind("probe")
    declared = {o.name: (name, o) for name in DEFAULT_PROBES for o in getattr(probes[name], "options", ())}
    assert {name: probe for name, (probe, _) in declared.items()} == {
        "refine_ratio": "refinement", "refine_influence": "refinement", "exact": "depth",
        "max_length": "depth", "sample": "depth", "validate": "depth", "lesion_draws": "lesion",
        "lesion_modules": "lesion", "lens": "lens", "lens_steps": "lens", "lens_translators": "lens"}
    assert all(o.default == defaults[name] for name, (_, o) in declared.items() if name in defaults)
    from resprobe.cli import DTYPES  # named without torch for --help: the same as the measurement's

    assert tuple(importlib.import_module("resprobe.measure").DTYPES) == DTYPES
    assert importlib.import_module("resprobe.analyze").DEFAULT_PROBES == DEFAULT_PROBES
    assert Settings(dtype="bfloat16").with_options({"max_length": 2, "steps": 4}) == Settings(
        dtype="bfloat16", max_length=2, options={"steps": 4})

    code, _, err = run("analyze", "-o", str(tmp_path / "r"), "-q", "--probe", "depth", "--exact",
                       "--max-length", "2", "--probe", "attribution", "--attribution-steps", "4",
                       "--attribution-samples", "3")
    assert code == 0, err
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    results = {r["probe"]: r["summary"] for r in data["results"]}
    assert results["depth"]["streams"][0]["exact"]["truncated_at"] == 2
    assert results["attribution"]["steps"] == 4 and results["attribution"]["samples"] == 3
    code, _, err = run("analyze", "--max-length", "0", "-q")
    assert code == 2 and "--max-length" in err and "x>=1" in err
