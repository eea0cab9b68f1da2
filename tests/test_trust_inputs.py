"""The trust boundary for folders and names, and bad input that must end in one line (exit 2):
nothing runs without --trust, nothing is written outside -o, nothing huge is allocated."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from resprobe.cli import main

CONSOLE = Path(sys.executable).parent / "resprobe"


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "-q"], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def refused(code: int, out: str, err: str, message: str) -> bool:
    return code == 2 and out == "" and err.count("\n") == 1 and message in err and "Traceback" not in err


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current folder; the test's hostile files go in it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _bert_config(**changes: object) -> dict[str, object]:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2,
                                     intermediate_size=64, vocab_size=50)
    return {**config.to_dict(), **changes}


@pytest.mark.zoo
@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json"])
def test_hf_folder_with_its_own_code_is_refused_without_trust(work: Path, where: str) -> None:
    folder = work / "custom"
    folder.mkdir()
    payload = f"open({str(work / 'pwned')!r}, 'w').close()\nfrom transformers import BertModel as Evil\n"
    (folder / "modeling_evil.py").write_text(payload)
    auto = {"AutoModel": "modeling_evil.Evil", "AutoTokenizer": ["modeling_evil.Evil", None]}
    config = _bert_config(**({"auto_map": auto} if where == "config.json" else {}))
    (folder / "config.json").write_text(json.dumps(config))
    if where == "tokenizer_config.json":
        (folder / "tokenizer_config.json").write_text(json.dumps({"auto_map": auto}))
        (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    before = listing(work)
    code, out, err = run("analyze", "hf:custom", "-o", "r", stdin="y\ny\n")  # never asks
    assert refused(code, out, err, "pass --trust"), err
    assert "auto_map" in err and not (work / "pwned").exists() and listing(work) == before


@pytest.mark.zoo
def test_hf_pickled_weights_are_refused_in_one_line(work: Path) -> None:
    folder = work / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(_bert_config()))

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return (open, (str(work / "pwned"), "w"))

    torch.save({"embeddings.word_embeddings.weight": Evil()}, folder / "pytorch_model.bin")
    before = listing(work)
    for trust in ([], ["--trust"]):
        code, out, err = run("blocks", "hf:pickled", *trust)
        assert refused(code, out, err, "pytorch_model.bin holds pickled Python objects"), err
    assert not (work / "pwned").exists() and listing(work) == before


@pytest.mark.zoo
def test_hf_config_too_big_for_memory_is_built_on_the_meta_device(work: Path) -> None:
    """Nothing is allocated: the structure is reported, with a note that says why."""
    folder = work / "huge"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(_bert_config(vocab_size=10**8, hidden_size=1024)))
    start = time.perf_counter()
    code, out, err = run("analyze", "hf:huge", "-o", "r")
    assert code == 0, err
    assert time.perf_counter() - start < 60 and "no weights: structure only" in out
    report = json.loads((work / "r" / "report.json").read_text())
    assert report["model"]["weights"] == "none" and len(report["blocks"]) == 2  # one layer: attention + MLP
    assert any("would take 409.6 GB" in n and "meta device instead" in n for n in report["notes"])


@pytest.mark.zoo
def test_the_current_folder_never_shadows_an_installed_package(work: Path) -> None:
    """A PIL.py lying in the current folder must not run when the user names torchvision's
    resnet18, an --arch or an --objective; the user's own module there still imports."""
    pytest.importorskip("torchvision")
    marker = work / "pwned"
    for name in ("PIL", "networkx", "click"):  # installed packages: never replaced
        (work / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write({name!r})\n")
    # an optional import torchvision tries, not installed: never taken from here for an installed source
    (work / "accimage.py").write_text(f"open({str(marker)!r}, 'a').write('accimage')\n")
    (work / "mymodels.py").write_text(
        "import torch, torchvision\n"
        "def small():\n    return torchvision.models.resnet18(), torch.randn(1, 3, 32, 32)\n"
        "def loss(output, inputs, targets):\n    return output.square().mean(1)\n")
    torch.save(__import__("torchvision").models.resnet18().state_dict(), work / "w.pth")
    commands = [
        ["blocks", "torchvision.models:resnet18", "--input-shape", "1x3x32x32", "--no-verify"],
        ["blocks", "w.pth", "--arch", "torchvision.models:resnet18", "--input-shape", "1x3x32x32",
         "--no-verify"],
        ["blocks", "mymodels:small", "--no-verify"],
        ["analyze", "mymodels:small", "--objective", "mymodels:loss", "--probe", "gradients", "-o", "r"],
    ]
    for k, args in enumerate(commands):
        if k == 2:  # the user's own module lives here: its folder is searched (last) for what it imports
            (work / "accimage.py").unlink()
        done = subprocess.run([str(CONSOLE), *args, "-q"], cwd=work, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert not marker.exists(), (args, marker.read_text())


@pytest.mark.parametrize(("args", "message"), [
    (["--input-shape", "1x3x100000x100000"], "would take 120.0 GB"),
    (["--input-shape", "1x3x" + "9" * 20 + "x1"], "pass a smaller --input-shape"),
    (["--input-shape", "1x" + "9" * 5000], "too long"),
    (["--seed", str(2**70)], "Invalid value for '--seed'"),
    (["--timeout", "0"], "Invalid value for '--timeout'"),
    (["--batch-size", "0"], "Invalid value for '--batch-size'"),
])
def test_bad_numbers_are_one_line(work: Path, args: list[str], message: str) -> None:
    code, out, err = run("analyze", *args, "-o", "r")
    assert refused(code, out, err, message), err
    assert listing(work) == []


def _image_folder(work: Path, make: str) -> Path:
    from PIL import Image

    folder = work / "images" / "cats"
    folder.mkdir(parents=True)
    Image.new("L", (8, 8)).save(folder / "good.png")
    if make == "not-an-image":
        (folder / "notes.png").write_text("this is text, not a picture")
    elif make == "bomb":  # 100 M pixels in a few kilobytes: past Pillow's limit
        Image.new("1", (10_000, 10_000)).save(folder / "bomb.png")
    return work / "images"


@pytest.mark.parametrize(("make", "message"), [("not-an-image", "is not a readable image"),
                                                ("bomb", "too large to decode safely")])
def test_bad_image_folders_are_one_line(work: Path, make: str, message: str) -> None:
    pytest.importorskip("PIL")
    folder = _image_folder(work, make)
    before = listing(work)
    code, out, err = run("analyze", "--data", str(folder), "-o", "r")
    assert refused(code, out, err, message), err
    assert listing(work) == before


HANG = """
import torch
from torch import nn


class Hang(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        while True:
            x = x + self.fc(x) * 0


def make():
    return Hang(), torch.randn(1, 4)
"""


def test_timeout_stops_a_forward_pass_that_never_returns(work: Path) -> None:
    (work / "hang.py").write_text(HANG)
    start = time.perf_counter()
    done = subprocess.run([str(CONSOLE), "analyze", "hang:make", "--timeout", "2", "-o", "r", "-q"],
                          cwd=work, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert "stopped after --timeout 2 s" in done.stderr and "Traceback" not in done.stderr
    assert time.perf_counter() - start < 60 and not (work / "r").exists()


def test_timeout_leaves_a_normal_analysis_alone(work: Path) -> None:
    code, out, err = run("blocks", "--timeout", "600")
    assert code == 0 and "residual block(s)" in out, err


def test_file_text_cannot_rewrite_the_terminal(work: Path) -> None:
    from safetensors.torch import save_file

    key = "\r\x1b[2K\x1b[1Aok: file is safe, pass --trust\n\x1b[8m"
    save_file({key: torch.zeros(1)}, str(work / "w.safetensors"))
    code, out, err = run("analyze", "w.safetensors", "-o", "r")
    assert refused(code, out, err, "pass --arch SOURCE") and "\x1b" not in err and "\r" not in err


class _Exec:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, ("open('pwned', 'w').close()",))


def test_a_refused_pickle_names_what_would_run_first(work: Path) -> None:
    torch.save({"a": torch.nn.Conv2d(1, 1, 1), "b": _Exec()}, work / "decoy.pt")
    code, out, err = run("analyze", "decoy.pt", "-o", "r")
    listed = err.split("(", 1)[1].split(")", 1)[0]  # what the message names, at most four
    assert refused(code, out, err, "pass --trust") and "exec'" in listed
    assert not (work / "pwned").exists()


def test_stride_0_inputs_are_sized_as_used(work: Path) -> None:
    torch.save(torch.zeros(1, 1, 8, 8).expand(10**9, 1, 8, 8), work / "x.pt")  # 256 GB once used
    code, out, err = run("analyze", "--inputs", "x.pt", "-o", "r")
    assert refused(code, out, err, "the inputs in x.pt would take"), err


@pytest.mark.parametrize(("targets", "message"),
                         [(3, "must be a tensor"), (torch.zeros(2), "one entry for each")])
def test_bad_targets_are_one_line(work: Path, targets: object, message: str) -> None:
    torch.save({"inputs": torch.randn(5, 1, 8, 8), "labels": targets}, work / "d.pt")
    code, out, err = run("analyze", "--data", "d.pt", "-o", "r")
    assert refused(code, out, err, message), err


def test_postscript_named_png_is_not_opened(work: Path) -> None:
    pytest.importorskip("PIL")
    folder = _image_folder(work, "none")
    (folder / "cats" / "page.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n")
    code, out, err = run("analyze", "--data", str(folder), "-o", "r")
    assert refused(code, out, err, "is not a readable image"), err


@pytest.mark.zoo
def test_hf_index_naming_weights_outside_the_folder_is_refused(work: Path) -> None:
    folder = work / "sharded"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(_bert_config()))
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {"a": "../evil.bin"}}))
    code, out, err = run("blocks", "hf:sharded")
    assert refused(code, out, err, "names weights outside the folder"), err


def test_class_targets_outside_the_model_are_one_line(work: Path) -> None:
    torch.save({"inputs": torch.randn(4, 1, 8, 8), "labels": torch.tensor([0, 1, 10, 2])}, work / "d.pt")
    code, out, err = run("analyze", "--data", "d.pt", "-o", "r")
    assert refused(code, out, err, "class targets run from 0 to 10, but the model gives 10 classes"), err
