"""The CLI on files saved from real models, every zoo prefix, and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from resprobe.cli import main

pytestmark = pytest.mark.zoo


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "-q"])
    return result.exit_code, result.stdout, result.stderr


class Evil:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tv = pytest.importorskip("torchvision")
    timm = pytest.importorskip("timm")
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("cli-files")
    torch.manual_seed(0)
    resnet = tv.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 32, 32)
    out = {"state": d / "resnet18.pth", "ckpt": d / "timm.ckpt", "safe": d / "resnet18.safetensors",
           "pickled": d / "whole.pt", "script": d / "traced.pt", "exported": d / "model.pt2",
           "hf": d / "bert", "inputs": d / "inputs.pt"}
    torch.save(resnet.state_dict(), out["state"])
    torch.save({"state_dict": timm.create_model("resnet18", pretrained=False).state_dict(), "epoch": 1},
               out["ckpt"])
    save_file(resnet.state_dict(), str(out["safe"]))
    torch.save(resnet, out["pickled"])
    torch.jit.save(torch.jit.trace(resnet, x), out["script"])
    torch.export.save(torch.export.export(resnet, (x,)), str(out["exported"]))
    config = transformers.BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
                                     intermediate_size=64, vocab_size=50)
    transformers.BertModel(config).save_pretrained(out["hf"])
    torch.save((x,), out["inputs"])
    return out


@pytest.mark.parametrize(("kind", "extra", "blocks"), [
    ("state", ["--arch", "torchvision:resnet18"], 8),
    ("ckpt", ["--arch", "timm:resnet18"], 8),
    ("safe", ["--arch", "torchvision:resnet18", "--input-shape", "1x3x32x32"], 8),
    ("pickled", ["--trust"], 8),
    ("script", ["--trust", "--input-shape", "1x3x32x32"], 8),
    ("exported", [], 8),
    ("hf", [], 4),
])
def test_every_file_kind(files: dict[str, Path], kind: str, extra: list[str], blocks: int,
                         tmp_path: Path) -> None:
    source = f"hf:{files[kind]}" if kind == "hf" else str(files[kind])
    if kind == "pickled":
        extra = [*extra, "--inputs", str(files["inputs"])]
    code, out, err = run("analyze", source, *extra, "-o", str(tmp_path))
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["blocks"]) == blocks and f"{blocks} residual block(s)" in out


@pytest.mark.parametrize("source", ["torchvision:resnet18", "timm:resnet18"])
def test_every_zoo_prefix(source: str) -> None:
    code, out, err = run("blocks", source, "--json")
    assert code == 0, err
    assert len(json.loads(out)) == 8


@pytest.mark.parametrize(("make", "args", "message"), [
    (None, [], "no such file"),
    ("dir", [], "is a directory"),
    (b"", [], "is empty"),
    ("truncated", [], "truncated or corrupt"),
    (bytes(range(256)) * 4, [], "not a PyTorch model file"),
    (b'{"layers": 12}', [], "is a JSON file"),
    ("state", [], "pass --arch SOURCE"),
    ("state", ["--arch", "torchvision:resnet50"], "does not fit torchvision:resnet50"),
    ("state", ["--arch", "torchvision:resnet1800"], "torchvision has no model 'resnet1800'"),
    ("state", ["--arch", "nozoo:thing"], "'nozoo' is neither an installed adapter"),
    ("pickled", [], "pass --trust"),
])
def test_every_bad_input(files: dict[str, Path], tmp_path: Path, make: object, args: list[str],
                         message: str) -> None:
    path = tmp_path / "model.pt"
    if make == "dir":
        path = tmp_path
    elif make == "truncated":
        path.write_bytes(files["state"].read_bytes()[:4096])
    elif make in ("state", "pickled"):
        path = files[str(make)]
    elif isinstance(make, bytes):
        path.write_bytes(make)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run("analyze", str(path), *args, "-o", str(tmp_path / "report"))
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_model_failing_is_exit_1(files: dict[str, Path]) -> None:
    code, _, err = run("blocks", str(files["state"]), "--arch", "torchvision:resnet18",
                       "--input-shape", "1x1x32x32")
    assert code == 1 and "failed in module 'conv1'" in err


def test_malicious_pickle_through_the_console_script(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save(Evil(marker), path)
    exe = Path(sys.executable).parent / "resprobe"
    for args in ([], ["--arch", "torchvision:resnet18"]):
        done = subprocess.run([str(exe), "analyze", str(path), *args, "-o", str(tmp_path / "r")],
                              capture_output=True, text=True)
        assert done.returncode == 2 and "pass --trust" in done.stderr
        assert "Traceback" not in done.stderr
    assert not marker.exists() and not (tmp_path / "r").exists()
