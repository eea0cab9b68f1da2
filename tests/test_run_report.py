"""The run report (``resprobe report RUN_DIR``) on hand-made run records with known numbers."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from resprobe._cli_report import report
from resprobe.cli import _Group
from resprobe.errors import SourceError, UsageError
from resprobe.render.heatmap import scale
from resprobe.render.run import run_html, run_markdown
from resprobe.render.runparts import role_changes, subsampled
from resprobe.runlog import FILE, Run, RunBlock, RunHeader, RunStep, RunStream, RunWriter, read_run

NAMES = ("layers.0", "layers.1", "layers.2")
EVIL = "head.<script>alert(1)</script>|x"


def _header(names: Sequence[str] = NAMES, stream_of: Mapping[str, int] | None = None,
            model: str = "TinyNet", notes: tuple[str, ...] = ()) -> RunHeader:
    stream_of = stream_of or {}
    position: dict[int, int] = {}
    blocks = []
    for n in names:
        sid = stream_of.get(n, 0)
        position[sid] = position.get(sid, 0) + 1
        blocks.append(RunBlock(n, sid, position[sid]))
    return RunHeader(model=model, blocks=tuple(blocks), layers=(), every=10, notes=notes)


def _numbers(k: int, i: int) -> dict[str, Any]:
    """Block ``i`` at measured step index ``k``: smooth, known values."""
    return {"update_ratio": 0.5 + 0.01 * i + 0.001 * k, "block_influence": 0.05 + 0.01 * i,
            "branch_gain": 1.0 + 0.1 * i, "grad_norm": 10.0 ** (-2 - i), "label": "refine"}


def _step(number: int, blocks: Mapping[str, Mapping[str, Any]], nominal: int = 3,
          depth: float | None = 2.0) -> RunStep:
    streams = (RunStream(0, nominal, depth, (1, 3) if depth is not None else None),)
    return RunStep(number, 1.7e9 + number, float(number), 16, 1, blocks, streams)


def _run(n: int, names: Sequence[str] = NAMES, **header: Any) -> tuple[RunHeader, list[RunStep]]:
    steps = [_step(10 * (k + 1), {b: _numbers(k, i) for i, b in enumerate(names)}) for k in range(n)]
    return _header(names, **header), steps


def _set(step: RunStep, block: str, key: str, value: Any) -> None:
    """Change one number of a step made by ``_run`` (its per-block dicts are plain dicts)."""
    numbers = step.blocks[block]
    assert isinstance(numbers, dict)
    numbers[key] = value


def _write(folder: Path, header: RunHeader, steps: Sequence[RunStep]) -> Path:
    w = RunWriter(folder)
    w.header(header)
    for s in steps:
        w.step(s)
    w.close()
    return folder


def _saved(tmp_path: Path, header: RunHeader, steps: Sequence[RunStep]) -> Run:
    """The run as written to disk and read back (what the report command sees)."""
    return read_run(_write(tmp_path / "run", header, steps))


def _svgs(page: str) -> list[str]:
    return re.findall(r"<svg.*?</svg>", page, re.S)


# ---- the page's content -------------------------------------------------------------------------


def test_a_label_flip_is_a_role_change_at_the_first_step_it_held(tmp_path: Path) -> None:
    header, steps = _run(6)
    for s in steps:
        if s.step >= 30:
            _set(s, "layers.1", "label", "rebuild")
    run = _saved(tmp_path, header, steps)
    (change,) = role_changes(run)
    assert (change.block, change.before, change.after, change.step) == ("layers.1", "refine", "rebuild", 30)
    page = run_html(run)
    assert "<td>layers.1</td><td>0</td><td>refine</td><td>rebuild</td><td>30</td>" in page
    assert "1 label change(s) in all, in 1 of 3 block(s)" in page
    assert "| layers.1 | 0 | refine | rebuild | 30 |" in run_markdown(run)


def test_no_role_change_is_said_in_a_sentence(tmp_path: Path) -> None:
    run = _saved(tmp_path, *_run(4))
    assert role_changes(run) == []
    assert "No block changed its label" in run_html(run)
    assert "No block changed its label" in run_markdown(run)


def test_a_missing_label_does_not_count_as_a_change(tmp_path: Path) -> None:
    header, steps = _run(5)
    _set(steps[2], "layers.0", "label", None)
    assert role_changes(_saved(tmp_path, header, steps)) == []


def test_a_heatmap_cell_carries_the_exact_value(tmp_path: Path) -> None:
    header, steps = _run(3)
    _set(steps[1], "layers.2", "update_ratio", 0.123456789012)
    page = run_html(_saved(tmp_path, header, steps))
    assert "<title>layers.2 · step 20: 0.123456789012</title>" in page


def test_a_missing_value_is_a_hatched_cell(tmp_path: Path) -> None:
    header, steps = _run(3)
    _set(steps[0], "layers.0", "branch_gain", None)
    page = run_html(_saved(tmp_path, header, steps))
    cell = re.search(r'<rect [^>]*fill="([^"]+)"><title>layers\.0 · step 10: not measured</title>', page)
    assert cell is not None and cell.group(1) == "url(#resprobe-run-branch_gain-na)"
    assert '<pattern id="resprobe-run-branch_gain-na"' in page
    assert page.count(": not measured</title>") == 1  # every other cell has its number


def test_each_heatmap_has_a_legend_with_name_unit_and_scale(tmp_path: Path) -> None:
    page = run_html(_saved(tmp_path, *_run(4)))
    assert "update ratio (ratio of norms), linear colour scale" in page
    assert "‖∂L/∂y‖ (loss per unit of activation), log10 colour scale" in page
    assert "block influence (1 − cosine, 0 to 2)" in page and "branch gain (ratio of norms)" in page
    assert len(_svgs(page)) == 4 + 1 + 1  # four heatmaps, effective depth, gradient along depth


def test_the_colour_scale_is_log_only_over_more_than_two_decades() -> None:
    assert scale([0.01, 0.5, 2.0]).log is True
    assert scale([0.1, 0.5, 2.0]).log is False
    assert scale([0.0, 0.5, 200.0]).log is False  # a zero: no log scale
    lin = scale([1.0, 3.0])
    assert (lin.position(1.0), lin.position(2.0), lin.position(3.0)) == (0.0, 0.5, 1.0)
    assert lin.colour(1.0) == "#2c7bb6" and lin.colour(3.0) == "#d7191c"
    assert [t for _, t in scale([0.001, 0.1], log=True).ticks()] == ["1e−3", "0.01", "0.1"]


def test_rows_follow_stream_order_and_streams_are_marked(tmp_path: Path) -> None:
    names = ("dec.0", "enc.0", "enc.1", "dec.1")
    header, steps = _run(3, names, stream_of={"enc.0": 0, "enc.1": 0, "dec.0": 1, "dec.1": 1})
    heat = _svgs(run_html(_saved(tmp_path, header, steps)))[0]
    order = re.findall(r"<title>(\S+) · step 10:", heat)
    assert order == ["enc.0", "enc.1", "dec.0", "dec.1"]
    assert ">stream 0</text>" in heat and ">stream 1</text>" in heat
    assert heat.count('stroke="#222"') == 1  # one boundary between the two streams


def test_long_block_names_are_shortened_on_the_axis_only(tmp_path: Path) -> None:
    long = "model.encoder.layers.11.attention.self.output.dense_residual"
    heat = _svgs(run_html(_saved(tmp_path, *_run(2, (long, "b")))))[0]
    assert f"<title>{long} · step 10:" in heat
    assert f">{long}</text>" not in heat and ">…" in heat


def test_more_than_200_steps_are_subsampled_evenly_and_it_says_so(tmp_path: Path) -> None:
    run = _saved(tmp_path, *_run(250))
    page = run_html(run)
    assert "Showing 200 of 250 measured steps, evenly spaced" in page
    heat = _svgs(page)[0]
    shown = [int(s) for s in re.findall(r"<title>layers\.0 · step (\d+):", heat)]
    assert len(shown) == 200 and shown[0] == 10 and shown[-1] == 2500 and shown == sorted(set(shown))
    assert "Showing" not in run_html(_saved(tmp_path / "small", *_run(200)))


def test_subsampling_keeps_the_ends_and_spaces_evenly() -> None:
    steps = [_step(k, {}) for k in range(1000)]
    picked = [s.step for s in subsampled(steps, 5)]
    assert picked == [0, 250, 500, 749, 999]
    assert subsampled(steps[:5], 5) == steps[:5]


def test_effective_depth_chart_has_the_band_the_nominal_depth_and_the_values(tmp_path: Path) -> None:
    header, steps = _run(4)
    steps[2] = _step(30, steps[2].blocks, depth=None)  # a gap in the line
    steps[3] = _step(40, steps[3].blocks, depth=2.625, nominal=3)
    page = run_html(_saved(tmp_path, header, steps))
    depth = next(s for s in _svgs(page) if "effective depth over training, stream 0" in s)
    assert "<title>step 40: effective depth 2.625, window 1–3 of 3 blocks</title>" in depth
    assert "step 30:" not in depth
    assert depth.count("<polygon") == 2 and 'stroke-dasharray="6 4"' in depth


def test_gradient_along_depth_at_chosen_steps(tmp_path: Path) -> None:
    run = _saved(tmp_path, *_run(9))
    default = next(s for s in _svgs(run_html(run)) if "along stream 0" in s)
    assert [t for t in re.findall(r">(step \d+)</text>", default)] == ["step 10", "step 50", "step 90"]
    chosen = next(s for s in _svgs(run_html(run, [20, 70])) if "along stream 0" in s)
    assert re.findall(r">(step \d+)</text>", chosen) == ["step 20", "step 70"]
    with pytest.raises(UsageError, match="step 25 was not measured"):
        run_html(run, [25])


def test_per_block_summary_first_and_last(tmp_path: Path) -> None:
    header, steps = _run(5)
    _set(steps[0], "layers.0", "update_ratio", None)
    page = run_html(_saved(tmp_path, header, steps))
    row = re.search(r"<tr><td>0</td><td>1</td><td>layers\.0</td>(.*?)</tr>", page)
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(1))
    assert cells[0] == "0.501 → 0.504"  # the first measured value is at the second step
    assert cells[2] == "1.000e-02 → 1.000e-02" and cells[4] == "refine → refine" and cells[5] == "0"


def test_names_and_notes_from_the_record_are_escaped(tmp_path: Path) -> None:
    header, steps = _run(3, ("layers.0", EVIL), model="Net<img src=x>|*", notes=("see <b>|this|</b>",))
    run = _saved(tmp_path, header, steps)
    page = run_html(run)
    assert "<script" not in page and "<img" not in page and "<b>|" not in page
    assert "head.&lt;script&gt;alert(1)&lt;/script&gt;|x" in page and "see &lt;b&gt;|this|&lt;/b&gt;" in page
    text = run_markdown(run)
    assert "<script" not in text and "<img" not in text
    assert "head.&lt;script&gt;alert\\(1\\)&lt;/script&gt;\\|x" in text
    assert "# resprobe run: Net&lt;img src=x&gt;\\|\\*" in text


def test_the_page_makes_no_request_and_needs_no_script(tmp_path: Path) -> None:
    page = run_html(_saved(tmp_path, *_run(5)))
    assert not re.search(r"<script|<link|<img|\ssrc=|href=|@import", page)
    assert set(re.findall(r"url\((.)", page)) <= {"#"}
    assert set(re.findall(r"https?://[^\"' ]+", page)) == {"http://www.w3.org/2000/svg"}


def test_the_facts_come_first(tmp_path: Path) -> None:
    header, steps = _run(5, notes=("two processes merged",))
    header = RunHeader(header.model, header.blocks, header.layers, every=10, world_size=2, notes=header.notes)
    page = run_html(_saved(tmp_path, header, steps))
    assert page.index("steps measured") < page.index("Metrics over training") < page.index("Role changes")
    assert "5: steps 10–50 (every 10)" in page and "<td>2 (their numbers merged)</td>" in page
    assert "<li>two processes merged</li>" in page


def test_an_empty_run_says_no_step_was_measured(tmp_path: Path) -> None:
    run = _saved(tmp_path, _header(), [])
    for text in (run_html(run), run_markdown(run)):
        assert "No step was measured" in text and "none: no step was measured" in text
        assert "<svg" not in text


def test_markdown_has_the_sections_as_tables_and_inline_charts(tmp_path: Path) -> None:
    text = run_markdown(_saved(tmp_path, *_run(9)))
    heads = re.findall(r"^##? .*$", text, re.M)
    assert heads[1:] == ["## Metrics over training", "## Effective depth over training",
                         "## Gradient norm along depth", "## Role changes",
                         "## Blocks: first and last measured value"]
    assert "| stream | block | step 10 | step 50 | step 90 |" in text
    assert "| 0 | layers.2 | 0.520 | 0.524 | 0.528 |" in text
    assert text.count('<div class="chart">\n<svg') == 2


# ---- the command --------------------------------------------------------------------------------


def _group() -> click.Group:
    """The command as resprobe's group runs it (errors become exit codes)."""
    @click.group(cls=_Group)
    def root() -> None:
        pass

    root.add_command(report)
    return root


def test_the_command_writes_both_files_into_the_run_folder(tmp_path: Path) -> None:
    header, steps = _run(6)
    _set(steps[5], "layers.2", "label", "rebuild")
    folder = _write(tmp_path / "run", header, steps)
    result = CliRunner().invoke(report, [str(folder)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-2:] == [f"wrote {folder / 'run-report.html'}", f"wrote {folder / 'run-report.md'}"]
    assert "steps measured: 6: steps 10–60 (every 10)" in lines
    assert "effective depth, first → last: stream 0 2.00 → 2.00 of 3 blocks" in lines
    assert "role changes: 1 in 1 block(s)" in lines
    assert sorted(p.name for p in folder.iterdir()) == [FILE, "run-report.html", "run-report.md"]
    assert (folder / "run-report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_the_command_options(tmp_path: Path) -> None:
    folder = _write(tmp_path / "run", *_run(6))
    out = tmp_path / "out" / "nested"
    result = CliRunner().invoke(report, [str(folder / FILE), "-o", str(out), "--format", "md", "--at", "20",
                                         "-q"])
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {out / 'run-report.md'}\n"
    assert [p.name for p in out.iterdir()] == ["run-report.md"]
    assert ">step 20</text>" in (out / "run-report.md").read_text(encoding="utf-8")


def test_the_command_replaces_an_earlier_report_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    folder = _write(tmp_path / "run", *_run(3))
    (folder / "run-report.html").write_text("old", encoding="utf-8")
    assert CliRunner().invoke(report, [str(folder), "-q"]).exit_code == 0
    assert (folder / "run-report.html").read_text(encoding="utf-8") != "old"
    assert sorted(p.name for p in folder.iterdir()) == [FILE, "run-report.html", "run-report.md"]


def test_a_report_that_cannot_be_written_is_a_usage_error(tmp_path: Path) -> None:
    folder = _write(tmp_path / "run", *_run(3))
    (folder / "run-report.md").mkdir()
    result = CliRunner().invoke(report, [str(folder)])
    assert isinstance(result.exception, UsageError) and "cannot write" in str(result.exception)
    assert sorted(p.name for p in folder.iterdir()) == [FILE, "run-report.html", "run-report.md"]
    blocked = tmp_path / "file"
    blocked.write_text("x", encoding="utf-8")
    result = CliRunner().invoke(report, [str(folder), "-o", str(blocked)])
    assert isinstance(result.exception, UsageError) and "is a file, not a folder" in str(result.exception)


def test_a_malformed_record_is_a_source_error(tmp_path: Path) -> None:
    folder = _write(tmp_path / "run", *_run(3))
    with open(folder / FILE, "a", encoding="utf-8") as f:
        f.write("{not json\n")
    result = CliRunner().invoke(report, [str(folder)])
    assert isinstance(result.exception, SourceError) and "is not JSON" in str(result.exception)
    ran = CliRunner().invoke(_group(), ["report", str(folder)])
    assert ran.exit_code == 2 and ran.stderr.startswith("error: ") and ran.stderr.count("\n") == 1
    assert not (folder / "run-report.html").exists()


@pytest.mark.parametrize("content, message", [
    (None, "no run record at"), (b"\xff\xfe\x00binary\n", "not a text file"),
    (b'{"kind": "step", "step": 1}\n', "holds no run header"),
    (b'{"kind": "run", "model": "M"}\n', "malformed record")])
def test_bad_input_says_what_to_pass(tmp_path: Path, content: bytes | None, message: str) -> None:
    if content is not None:
        (tmp_path / FILE).write_bytes(content)
    result = CliRunner().invoke(report, [str(tmp_path)])
    assert isinstance(result.exception, SourceError) and message in str(result.exception)


def test_an_unmeasured_step_for_at_is_a_usage_error(tmp_path: Path) -> None:
    folder = _write(tmp_path / "run", *_run(3))
    ran = CliRunner().invoke(_group(), ["report", str(folder), "--at", "25"])
    assert ran.exit_code == 2 and "--at 25: step 25 was not measured" in ran.stderr
    assert not (folder / "run-report.html").exists()


def test_the_summary_keeps_names_on_one_line(tmp_path: Path) -> None:
    folder = _write(tmp_path / "run", *_run(2, model="Net\n\x1b[31mred"))
    result = CliRunner().invoke(report, [str(folder)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("Net\\n\\x1b[31mred: 3 residual block(s)")
    assert "\x1b" not in result.output


def test_the_command_on_an_empty_run(tmp_path: Path) -> None:
    folder = _write(tmp_path / "run", _header(), [])
    result = CliRunner().invoke(report, [str(folder)])
    assert result.exit_code == 0, result.output
    assert "steps measured: none: no step was measured" in result.output
    assert "No step was measured" in (folder / "run-report.html").read_text(encoding="utf-8")


def test_help_imports_no_torch() -> None:
    code = ("import sys\nfrom click.testing import CliRunner\nfrom resprobe._cli_report import report\n"
            "out = CliRunner().invoke(report, ['--help']).output\n"
            "assert 'RUN_DIR' in out and '--at' in out, out\nassert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)
