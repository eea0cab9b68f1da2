"""The same command gives the same numbers; hf LM folders are analysed with their head; the
probe list can be added to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from resprobe.cli import main

pytestmark = pytest.mark.zoo


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "-q"])
    return result.exit_code, result.stdout, result.stderr


def _report(folder: Path) -> dict[str, object]:
    report = json.loads((folder / "report.json").read_text())
    report["graph"].pop("capture_seconds")  # a timing, the one thing allowed to differ
    return report


@pytest.mark.parametrize("source", ["torchvision:resnet18", "timm:resnet18"])
def test_the_same_command_twice_writes_the_same_numbers(source: str, tmp_path: Path) -> None:
    """Random weights come from --seed (default 0), so two runs agree to the last digit, and
    another seed gives another model."""
    reports = []
    for k, seed in enumerate(("0", "0", "1")):
        code, out, err = run("analyze", source, "--input-shape", "2x3x64x64", "--seed", seed,
                             "-o", str(tmp_path / str(k)))
        assert code == 0, err
        reports.append(_report(tmp_path / str(k)))
    assert reports[0] == reports[1]
    assert reports[0]["model"]["seed"] == 0 and reports[2]["model"]["seed"] == 1
    assert reports[0]["blocks"] != reports[2]["blocks"]


def test_an_hf_language_model_folder_keeps_its_head(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32,
                                     bos_token_id=0, eos_token_id=0)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "lm")
    config.architectures = ["GPT2LMHeadModel"]
    config.save_pretrained(tmp_path / "config-only")  # no weights: random, still with its head
    for folder in ("lm", "config-only"):
        code, out, err = run("analyze", f"hf:{tmp_path / folder}", "--probe", "verify",
                             "--probe", "gradients", "-o", str(tmp_path / f"r-{folder}"))
        assert code == 0, err
        report = json.loads((tmp_path / f"r-{folder}" / "report.json").read_text())
        assert report["model"]["class"] == "GPT2LMHeadModel"
        assert report["objective"]["name"] == "next-token" and "gradients of next-token" in out


def test_probes_can_be_added_and_left_out(tmp_path: Path) -> None:
    pytest.importorskip("captum")
    code, out, err = run("analyze", "--probe", "+attribution", "--probe", "-depth", "-o", str(tmp_path))
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["probe"] for r in report["results"]] == ["verify", "refinement", "gradients", "lesion", "lens",
                                                       "attribution"]
    assert "\nattribution (IntegratedGradients over branch gates" in out and "lesions:" in out
    code, _, err = run("analyze", "--probe", "-nothing", "-o", str(tmp_path / "x"))
    assert code == 2 and "'nothing' is not in the list" in err and err.count("\n") == 1


def test_a_zero_head_gives_a_note_not_a_table_of_zeros(tmp_path: Path) -> None:
    """torchvision's ViT zero-initialises its head: every gradient is exactly zero, which is not
    a measurement; the gradients probe says so and what to pass, and writes no zeros."""
    pytest.importorskip("torchvision")
    code, out, err = run("analyze", "torchvision:vit_b_16", "--probe", "refinement", "--probe", "gradients",
                         "-o", str(tmp_path))
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    gradients = next(r for r in report["results"] if r["probe"] == "gradients")
    assert gradients["summary"]["measured"] == 0 and gradients["blocks"] == {}
    assert "gives exactly zero gradient at every block" in gradients["notes"][0]
    assert "pass --objective" in out
