"""resprobe compare: two reports side by side, what changed, rendered and on the command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import torch
from click.testing import CliRunner

import resprobe
from resprobe._cli_compare import compare
from resprobe.cli import _Group, main
from resprobe.compare import Comparison, RoleChange, compare_reports, read_report
from resprobe.errors import SourceError, UsageError
from resprobe.examples import digits_resnet, digits_vit
from resprobe.render.compare import comparison_html, comparison_markdown, comparison_text
from resprobe.report import Report

PROBES = ("refinement", "gradients", "depth")
ZEROED = "layers.2"  # the block whose branch is switched off in report B


@pytest.fixture(scope="module")
def before() -> Report:
    return resprobe.analyze(digits_resnet(), probes=PROBES)


@pytest.fixture(scope="module")
def after() -> Report:
    """The same model with the last BatchNorm of one block zeroed: that branch now adds nothing."""
    loaded = digits_resnet()
    with torch.no_grad():
        bn = loaded.model.get_submodule(f"{ZEROED}.bn2")
        bn.weight.zero_()
        bn.bias.zero_()
    return resprobe.analyze(loaded, probes=PROBES)


@pytest.fixture(scope="module")
def vit() -> Report:
    return resprobe.analyze(digits_vit(), probes=PROBES)


def _saved(report: Report | dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = report.to_dict() if isinstance(report, Report) else report
    (folder / "report.json").write_text(json.dumps(data), encoding="utf-8")
    return folder


def _cli() -> click.Group:
    """The main command line once ``compare`` is registered there; until then a group of the same
    class (it turns resprobe errors into one-line messages and exit codes) holding only ``compare``."""
    if "compare" in main.commands:
        return main
    return _Group(name="resprobe", commands={"compare": compare})


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(_cli(), ["compare", *args])
    return result.exit_code, result.stdout, result.stderr


# the comparison


def test_the_zeroed_block_is_the_one_that_changed(before: Report, after: Report) -> None:
    c = compare_reports(before, after)
    assert isinstance(c, Comparison)
    old = before.block(ZEROED)
    assert old is not None and old.label in ("refine", "rebuild")
    assert c.role_changes == (RoleChange(ZEROED, old.label, "idle"),)
    assert [b.name for b in c.blocks if b.role_changed] == [ZEROED]
    ratio = c.block(ZEROED).metric("update_ratio")  # type: ignore[union-attr]
    assert ratio is not None and ratio.a == old.metrics.refinement.update_ratio  # type: ignore[union-attr]
    assert ratio.b is not None and ratio.b < 1e-6 and ratio.relative == pytest.approx(-1.0)
    assert ratio.delta == pytest.approx(-ratio.a)  # type: ignore[operator]
    assert [b.name for b in c.largest("update_ratio", 1)] == [ZEROED]
    others = [b.metric("update_ratio") for b in c.blocks if b.name != ZEROED]
    assert all(m is not None and m.size < 0.1 for m in others)
    earlier = [b for b in c.blocks if b.name in ("layers.0", "layers.1")]  # before it: the same inputs
    assert all(b.metric("update_ratio").delta == 0 for b in earlier)  # type: ignore[union-attr]
    text = "\n".join(c.changes)
    assert f"1 block(s) changed role: {ZEROED} {old.label} → idle" in text
    assert f"largest change of update ratio: {ZEROED} " in text  # one block only: the others moved < 10%
    assert "of branch gain: layers.2 " in text
    (depth,) = c.depth
    assert depth.a is not None and depth.b is not None and depth.b < depth.a
    assert f"effective depth of stream 0: {depth.a:.2f} → {depth.b:.2f} of 6 blocks" in text
    assert "different data" not in text and "only in" not in text  # same data, same blocks
    assert c.only_a == c.only_b == ()


def test_identical_reports_differ_in_nothing(before: Report) -> None:
    again = resprobe.analyze(digits_resnet(), probes=PROBES)
    for c in (compare_reports(before, before), compare_reports(before, again)):
        assert c.changes == () and c.role_changes == () and c.only_a == c.only_b == ()
        assert len(c.blocks) == 6 and {"update_ratio", "branch_gain", "grad_norm"} <= set(c.metrics)
        values = [m for b in c.blocks for m in b.metrics if m.a is not None]
        assert values and all(m.delta == 0 and m.relative == 0 and m.size == 0 for m in values)
        assert all(d.delta == 0 for d in c.depth) and c.depth
        assert "Nothing changed" in comparison_text(c) and "Nothing changed" in comparison_markdown(c)


def test_reads_report_files_and_folders(before: Report, tmp_path: Path) -> None:
    folder = _saved(before, tmp_path / "a")
    c = compare_reports(folder, folder / "report.json")
    assert c.changes == () and c.source_a == str(folder) and c.source_b == str(folder / "report.json")
    assert read_report(str(folder)).to_dict() == before.to_dict()


def test_blocks_in_one_report_only(before: Report, vit: Report) -> None:
    c = compare_reports(before, vit)
    assert c.blocks == () and c.role_changes == ()
    assert c.only_a == tuple(b.name for b in before.blocks)
    assert c.only_b == tuple(b.name for b in vit.blocks) and "blocks.0.attn" in c.only_b
    text = "\n".join(c.changes)
    assert "A is a DigitsResNet, B a DigitsViT" in text and "no block is in both reports" in text
    assert "measured on different data" in text  # 16 images against 32: not only the weights differ


def test_a_removed_block(before: Report) -> None:
    d = before.to_dict()
    d["blocks"] = [b for b in d["blocks"] if b["name"] != "layers.4"]
    c = compare_reports(before, Report.from_dict(d))
    assert c.only_a == ("layers.4",) and c.only_b == () and len(c.blocks) == 5
    assert "1 block(s) only in A: layers.4" in c.changes
    back = compare_reports(Report.from_dict(d), before)
    assert back.only_b == ("layers.4",) and "1 block(s) only in B: layers.4" in back.changes


def test_other_data_and_objective_are_said(before: Report) -> None:
    d = before.to_dict()
    d["data"]["description"] = "digits from elsewhere"
    d["objective"]["name"] = "task"
    c = compare_reports(before, Report.from_dict(d))
    text = "\n".join(c.changes)
    assert "A and B were measured on different data (A: 16 held-out 8x8 digit images" in text
    assert "B: digits from elsewhere" in text and "may come from the data" in text
    assert "different objectives (A: self-ce" in text
    data = ("data", "16 held-out 8x8 digit images (16 samples)", "digits from elsewhere (16 samples)")
    assert data in c.context


def test_missing_metrics_are_none(before: Report) -> None:
    d = before.to_dict()
    for b in d["blocks"]:
        b["metrics"].pop("gradients")
    d["results"] = [r for r in d["results"] if r["probe"] != "gradients"]
    c = compare_reports(before, Report.from_dict(d))
    gain = c.block("layers.0").metric("branch_gain")  # type: ignore[union-attr]
    assert gain is not None and gain.a is not None and gain.b is None
    assert gain.delta is None and gain.relative is None and gain.size == 0
    assert "probe(s) gradients ran only for A: their numbers are not compared" in c.changes
    json.dumps(c.to_dict(), allow_nan=False)


def test_to_dict(before: Report, after: Report) -> None:
    d = json.loads(json.dumps(compare_reports(before, after).to_dict(), allow_nan=False))
    assert d["model_a"] == d["model_b"] == "DigitsResNet" and d["schema"] == 1
    assert d["role_changes"] == [{"block": ZEROED, "a": before.block(ZEROED).label,  # type: ignore[union-attr]
                                  "b": "idle"}]
    block = next(b for b in d["blocks"] if b["name"] == ZEROED)
    assert block["label_b"] == "idle" and block["metrics"]["update_ratio"]["relative"] == pytest.approx(-1)
    assert set(block["metrics"]["update_ratio"]) == {"probe", "a", "b", "delta", "relative"}
    assert d["depth"][0]["stream"] == 0 and d["depth"][0]["delta"] < 0 and d["changes"]


@pytest.mark.parametrize("bad, said", [
    ("missing.json", "does not exist"),
    ("text.json", "is not JSON"),
    ("list.json", "is JSON but not a resprobe report"),
    ("empty.json", "is JSON but not a resprobe report"),
    ("partial.json", "is not a resprobe report (it has no 'model')"),
    ("folder", "holds no report.json"),
])
def test_unreadable_reports(before: Report, tmp_path: Path, bad: str, said: str) -> None:
    (tmp_path / "text.json").write_text("not json at all", encoding="utf-8")
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    (tmp_path / "empty.json").write_text("{}", encoding="utf-8")
    (tmp_path / "partial.json").write_text('{"schema": 2, "resprobe_version": "0.1.0"}', encoding="utf-8")
    (tmp_path / "folder").mkdir()
    with pytest.raises(SourceError, match=re.escape(said)) as err:
        compare_reports(before, tmp_path / bad)
    assert str(err.value).startswith("report B: ") and "\n" not in str(err.value)
    with pytest.raises(UsageError, match="pass a resprobe.Report"):
        compare_reports(before, 3)  # type: ignore[arg-type]


def test_another_schema(before: Report, tmp_path: Path) -> None:
    d = before.to_dict()
    d["schema"] = 1
    with pytest.raises(SourceError, match="report A: .*report schema 1 is not 2"):
        compare_reports(_saved(d, tmp_path), before)


# rendering

_EVIL = "x<script>alert(1)</script>|y"


def _renamed(report: Report, old: str, new: str) -> Report:
    d = report.to_dict()
    for b in d["blocks"]:
        if b["name"] == old:
            b["name"] = new
    return Report.from_dict(d)


def _cells(line: str) -> int:
    """The cells of a Markdown table row: pipes not escaped."""
    return len(re.findall(r"(?<!\\)\|", line)) - 1


def test_markdown_escapes_names(before: Report, after: Report) -> None:
    c = compare_reports(_renamed(before, ZEROED, _EVIL), _renamed(after, ZEROED, _EVIL))
    md = comparison_markdown(c)
    assert "<script>" not in md and "x&lt;script&gt;alert\\(1\\)&lt;/script&gt;\\|y" in md
    old = before.block(ZEROED).label  # type: ignore[union-attr]
    lines = md.splitlines()
    (start,) = [k for k, line in enumerate(lines) if line.startswith("| block | role A")]
    width = _cells(lines[start])
    assert width == 3 + 3 * len(c.metrics) and _cells(lines[start + 1]) == width
    rows = lines[start + 2:lines.index("", start)]
    assert len(rows) == 6 and all(_cells(r) == width for r in rows)
    assert rows[2].startswith(f"| x&lt;script&gt;alert\\(1\\)&lt;/script&gt;\\|y | {old} | idle | ")
    roles = lines[lines.index("## Role changes") + 2:]
    assert roles[:3] == ["| block | A | B |", "| --- | --- | --- |",
                         f"| x&lt;script&gt;alert\\(1\\)&lt;/script&gt;\\|y | {old} | idle |"]


def test_html_escapes_names_and_stands_alone(before: Report, after: Report) -> None:
    c = compare_reports(_renamed(before, ZEROED, _EVIL), _renamed(after, ZEROED, _EVIL))
    page = comparison_html(c)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and "x&lt;script&gt;alert(1)&lt;/script&gt;|y" in page
    assert not re.search(r"""\b(?:src|href)=""", page) and "@import" not in page
    assert page.count("<svg") == 1 and "Δ update ratio per block" in page  # the chart
    assert '<tr class="changed"><td>x&lt;script&gt;' in page  # the role change is highlighted
    assert "<h2>Role changes</h2>" in page and "<h2>Effective depth</h2>" in page
    same = comparison_html(compare_reports(before, before))
    assert "Nothing changed" in same and "No block changed role." in same


def test_text_summary(before: Report, after: Report) -> None:
    text = comparison_text(compare_reports(_renamed(before, ZEROED, "a\x1b[2Jb"), _renamed(after, ZEROED,
                                                                                           "a\x1b[2Jb")))
    assert "\x1b" not in text and "a\\x1b[2Jb" in text
    lines = text.splitlines()
    table = lines[lines.index("blocks that changed most:") + 1:]
    assert table[0].split() == ["block", "role", "update", "ratio", "branch", "gain"]
    assert table[1].split()[:4] == ["a\\x1b[2Jb", before.block(ZEROED).label, "→", "idle"]  # type: ignore[union-attr]


# the command line


def test_cli_writes_three_files(before: Report, after: Report, tmp_path: Path) -> None:
    a, b = _saved(before, tmp_path / "a"), _saved(after, tmp_path / "b")
    out = tmp_path / "cmp"
    code, stdout, stderr = run(str(a), str(b / "report.json"), "-o", str(out))
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["compare.html", "compare.json", "compare.md"]
    assert f"1 block(s) changed role: {ZEROED}" in stdout and "blocks that changed most:" in stdout
    assert stdout.splitlines()[0] == f"A: {a} (DigitsResNet)"
    assert f"wrote {out / 'compare.json'}" in stdout
    data = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert data == json.loads(json.dumps(compare_reports(a, b / "report.json").to_dict()))
    assert "<h2>Role changes</h2>" in (out / "compare.html").read_text(encoding="utf-8")
    assert "## Role changes" in (out / "compare.md").read_text(encoding="utf-8")
    (out / "mine.txt").write_text("kept", encoding="utf-8")
    assert run(str(a), str(a), "-o", str(out))[0] == 0  # written again: replaced, nothing else touched
    assert json.loads((out / "compare.json").read_text(encoding="utf-8"))["changes"] == []
    assert sorted(p.name for p in out.iterdir()) == ["compare.html", "compare.json", "compare.md", "mine.txt"]


def test_cli_json(before: Report, after: Report, tmp_path: Path) -> None:
    a, b = _saved(before, tmp_path / "a"), _saved(after, tmp_path / "b")
    code, stdout, stderr = run(str(a), str(b), "--json", "-o", str(tmp_path / "cmp"))
    assert code == 0, stderr
    data = json.loads(stdout)  # only the JSON on stdout; what was written is said on stderr
    assert data["role_changes"][0]["block"] == ZEROED and "wrote" in stderr


@pytest.mark.parametrize("name, content, said", [
    ("missing.json", None, "does not exist"),
    ("notes.json", "these are not the reports you are looking for", "is not JSON"),
])
def test_cli_bad_files(before: Report, tmp_path: Path, name: str, content: str | None, said: str) -> None:
    good = _saved(before, tmp_path / "a")
    if content is not None:
        (tmp_path / name).write_text(content, encoding="utf-8")
    code, stdout, stderr = run(str(good), str(tmp_path / name))
    assert code == 2 and stdout == ""
    assert stderr.startswith("error: report B: ") and said in stderr and stderr.count("\n") == 1
    assert "Traceback" not in stderr


def test_cli_out_is_a_file(before: Report, tmp_path: Path) -> None:
    good = _saved(before, tmp_path / "a")
    (tmp_path / "taken").write_text("x", encoding="utf-8")
    code, _, stderr = run(str(good), str(good), "-o", str(tmp_path / "taken"))
    assert code == 2 and "it is a file, not a folder" in stderr and stderr.count("\n") == 1


def test_cli_help_does_not_import_torch() -> None:
    code = ("import sys\nfrom click.testing import CliRunner\nfrom resprobe._cli_compare import compare\n"
            "result = CliRunner().invoke(compare, ['--help'])\nassert result.exit_code == 0, result.output\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nprint(result.output)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "--json" in done.stdout and "-o, --out DIR" in done.stdout
