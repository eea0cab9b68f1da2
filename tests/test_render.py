"""Diagrams and reports: golden DOT files for the tiny zoo (RESPROBE_UPDATE_GOLDEN=1 rewrites
them), rendering each view, folding, and the HTML / Markdown / SVG exporters."""

from __future__ import annotations

import json
import math
import os
import xml.dom.minidom
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from torch import nn
from zoo import cases

import resprobe
from resprobe.render.dot import graph_dot, render
from resprobe.render.refinement import refinement_dot

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("RESPROBE_UPDATE_GOLDEN") == "1"
STRUCTURAL = [
    "identity_mlp",
    "projection_shortcut",
    "pre_norm_side_inputs",
    "post_norm",
    "post_activation_inplace",
    "nested",
    "scaled",
    "dense_block",
    "unet3",
]


def _structure(name: str) -> resprobe.Report:
    case = cases()[name]
    torch.manual_seed(0)
    return resprobe.analyze(resprobe.Loaded(case.model, resprobe.Inputs.of(case.inputs)), probes=("verify",))


def _golden(path: Path, text: str) -> None:
    if UPDATE or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"{path.name} was missing and has been written; check it in and run again")
    assert text == path.read_text(encoding="utf-8"), (
        f"{path.name} changed; RESPROBE_UPDATE_GOLDEN=1 rewrites it"
    )


@pytest.mark.parametrize("name", STRUCTURAL)
def test_golden_refinement_and_op_views(name: str) -> None:
    report = _structure(name)
    _golden(GOLDEN / f"{name}.refinement.dot", refinement_dot(report))
    graph = resprobe.capture(cases()[name].model, cases()[name].inputs)
    _golden(GOLDEN / f"{name}.ops.dot", graph_dot(graph, resprobe.find_blocks(graph)))


def test_dot_is_deterministic_across_runs() -> None:
    assert refinement_dot(_structure("nested")) == refinement_dot(_structure("nested"))


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_each_view_renders(fmt: str) -> None:
    report = _structure("post_norm")
    graph = resprobe.capture(cases()["post_norm"].model, cases()["post_norm"].inputs)
    for dot in (refinement_dot(report), graph_dot(graph, resprobe.find_blocks(graph))):
        out = render(dot, fmt)
        if fmt == "svg":
            xml.dom.minidom.parseString(out)
        else:
            assert out[:8] == b"\x89PNG\r\n\x1a\n"


class Layer(nn.Module):
    """A pre-norm transformer layer: a token-mixing block, then an MLP block."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.norm1, self.mix = nn.LayerNorm(width), nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mix(self.norm1(x))
        return x + self.mlp(self.norm2(x))  # type: ignore[no-any-return]


class DeepTransformer(nn.Module):
    """``layers`` pre-norm layers: 2 x layers blocks."""

    def __init__(self, layers: int):
        super().__init__()
        self.layers = nn.Sequential(*[Layer() for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # type: ignore[no-any-return]


def test_a_96_layer_transformer_folds_into_one_box_and_keeps_its_skips() -> None:
    torch.manual_seed(0)
    model, x = DeepTransformer(96), torch.randn(1, 4, 8)
    report = resprobe.analyze(resprobe.Loaded(model, resprobe.Inputs((x,))), probes=("refinement",))
    assert len(report.blocks) == 192 and report.result("refinement").summary["streams"][0]["layers"]
    folded = refinement_dot(report)  # folded by default above 24 blocks
    assert "× 96" in folded and folded.count("shape=box3d") == 1
    assert folded.count("->") == 3  # the spine edge and the two branch edges stay drawn
    unfolded = refinement_dot(report, fold=False)
    assert unfolded.count("step ") == 192 and "× " not in unfolded  # --no-fold: every block
    assert render(folded, "svg")


def test_projection_and_concat_skips_are_drawn_distinctly() -> None:
    projection = refinement_dot(_structure("projection_shortcut"))
    assert 'label=" projection"' in projection and "style=dashed" in projection
    concat = refinement_dot(_structure("unet3"))
    assert "concat skips · 3" in concat and "dotted" in concat


def test_colour_by_a_metric_with_a_legend() -> None:
    report = resprobe.analyze(
        resprobe.load("resprobe.examples:digits_resnet"), probes=("refinement", "gradients")
    )
    dot = refinement_dot(report, color_by="branch_gain")
    assert "colour: branch gain (" in dot and "update ratio 1.46" in dot
    with pytest.raises(ValueError, match="color_by must be one of"):
        refinement_dot(report, color_by="nonsense")
    assert "(not measured)" in refinement_dot(_structure("identity_mlp"))


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for key, value in attrs:
            if key in ("src", "href") and value and "://" in value:
                self.external.append(value)


def test_html_markdown_and_svg_exporters(tmp_path: Path) -> None:
    loaded = resprobe.load("resprobe.examples:digits_resnet")
    report = resprobe.analyze(loaded)
    written = report.save(tmp_path, ("json", "html", "md", "svg"))
    assert [p.name for p in written] == ["report.json", "report.html", "report.md", "report.svg"]
    page = (tmp_path / "report.html").read_text()
    tags = _Tags()
    tags.feed(page)
    assert (
        tags.tags["svg"] >= 5 and tags.tags["table"] == 2 and tags.tags["tr"] == 9 + 1 + 6
    )  # facts, header, one row per block
    assert not tags.external  # self-contained: nothing fetched from the network
    assert "effective depth, stream 0" in page and "lesion Δloss" in page
    md = (tmp_path / "report.md").read_text()
    assert "![refinement view](report.svg)" in md and md.count("| 0 | ") == 6
    for chart in (tmp_path / "report-charts").glob("*.svg"):
        xml.dom.minidom.parse(str(chart))
    charts = sorted(p.stem for p in (tmp_path / "report-charts").glob("*.svg"))
    assert charts == [
        "block_influence",
        "grad_norm_stream0",
        "lens_kl_stream0",
        "lens_top1_stream0",
        "lesion",
        "lesion_curve",
        "path_lengths_stream0",
        "update_ratio",
    ]
    assert (tmp_path / "report.dot").read_text().startswith('digraph "DigitsResNet"')
    assert (
        resprobe.Report.from_dict(json.loads((tmp_path / "report.json").read_text())).to_dict()
        == report.to_dict()
    )
    fragment = report._repr_html_()
    assert fragment.startswith("<div class=\"resprobe-report\">") and "<svg" in fragment


def test_a_report_says_what_was_not_measured(tmp_path: Path) -> None:
    report = _structure("identity_mlp")
    from resprobe.render.html import report_html

    page = report_html(report)
    assert "Not measured: refinement (probe not run), gradients (probe not run)" in page


def test_repeating_patterns_fold_without_a_measurement() -> None:
    torch.manual_seed(0)
    model, x = DeepTransformer(48), torch.randn(1, 4, 8)
    report = resprobe.analyze(resprobe.Loaded(model, resprobe.Inputs((x,))), probes=())
    dot = refinement_dot(report)  # no layers known: the attention/MLP pattern is found by itself
    assert "× 48" in dot and "(layers.0.mix … layers.0.mlp) … layers.47.mlp" in dot


def test_op_view_collapses_modules_by_depth() -> None:
    case = cases()["post_activation_inplace"]
    graph = resprobe.capture(case.model, case.inputs)
    blocks = resprobe.find_blocks(graph)
    full, collapsed = graph_dot(graph, blocks), graph_dot(graph, blocks, collapse=1)
    assert collapsed.count("[label=") < full.count("[label=")
    assert "join " in collapsed and "style=dashed" in collapsed  # joins and skips stay visible
    xml.dom.minidom.parseString(render(collapsed, "svg"))
    named = graph_dot(graph, blocks, modules=("blocks.0",))
    assert '"blocks.0\\nPostActivationBlock' in named and "blocks.1." in named


def test_graph_command_views(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from resprobe.cli import main

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, list(args))
        return result.exit_code, result.stderr

    code, err = run("graph", "-o", str(tmp_path / "r.dot"), "-q", "--measure", "--color-by", "branch_gain")
    dot = (tmp_path / "r.dot").read_text()
    assert code == 0 and "step 6 · layers.5" in dot and "colour: branch gain (" in dot
    code, _ = run("graph", "-o", str(tmp_path / "o.dot"), "-q", "--view", "ops", "--collapse-depth", "1")
    assert code == 0 and "layers\\nSequential" in (tmp_path / "o.dot").read_text()
    code, err = run("graph", "-o", str(tmp_path / "x.svg"), "--color-by", "nonsense")
    assert code == 2 and "Invalid value for '--color-by'" in err


def test_non_finite_numbers_do_not_break_diagrams_or_charts() -> None:
    from resprobe.render.charts import bar_chart, line_chart

    d = resprobe.analyze(resprobe.load("resprobe.examples:digits_resnet"), probes=("refinement",)).to_dict()
    d["blocks"][0]["metrics"]["refinement"]["update_ratio"] = float("nan")
    d["blocks"][1]["metrics"]["refinement"]["update_ratio"] = float("inf")
    report = resprobe.Report.from_dict(d)  # the report itself is read-only: change a copy, read it back
    assert math.isnan(report.blocks[0].metrics.value("refinement", "update_ratio"))
    xml.dom.minidom.parseString(render(refinement_dot(report), "svg"))
    for svg in (bar_chart("t", ["a", "b", "c"], [float("nan"), -1.0, -2.0]),
                line_chart("t", {"s": [float("inf"), 1.0, None]}, log=True, x_ticks=["1", "2", "3"])):
        assert "nan" not in svg and "inf" not in svg
        xml.dom.minidom.parseString(svg)


def _fake_layout_program(tmp_path: Path, body: str) -> str:
    """An executable that stands in for ``dot``: a Python script that reads the DOT, then ``body``."""
    import stat
    import sys

    exe = tmp_path / "fake-dot"
    exe.write_text(f"#!{sys.executable}\nimport os, signal, sys, time\nsys.stdin.buffer.read()\n{body}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(exe)


@pytest.mark.parametrize(("body", "said"), [
    ("sys.stderr.write('Error: layout\\n  crashed\\n'); os.kill(os.getpid(), signal.SIGSEGV)",
     "Graphviz failed: Error: layout crashed"),
    ("os.kill(os.getpid(), signal.SIGSEGV)", "Graphviz failed: killed by signal 11"),
    ("sys.exit(3)", "Graphviz failed: exit status 3"),
])
def test_a_crashing_layout_program_is_an_analysis_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       body: str, said: str) -> None:
    import resprobe.render.dot as dot

    monkeypatch.setattr(dot, "renderer", lambda: _fake_layout_program(tmp_path, body))
    with pytest.raises(resprobe.AnalysisError) as caught:
        render("digraph { a -> b }", "svg")
    err = caught.value
    assert isinstance(err, dot.LayoutError) and not isinstance(err, (resprobe.UsageError, dot.LayoutTimeout))
    assert str(err) == said and err.exit_code == 1


def test_a_layout_that_runs_too_long_is_a_layout_timeout(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import resprobe.render.dot as dot
    from resprobe.errors import LayoutError, LayoutTimeout

    assert dot.LayoutTimeout is LayoutTimeout  # still importable from where it was
    monkeypatch.setattr(dot, "renderer", lambda: _fake_layout_program(tmp_path, "time.sleep(60)"))
    start = time.monotonic()
    with pytest.raises(LayoutTimeout, match=r"^Graphviz took over 1 s to lay out the graph; fold it further"):
        render("digraph { a -> b }", "svg", timeout=1)
    assert time.monotonic() - start < 30  # the program was stopped, not waited for
    assert issubclass(LayoutTimeout, LayoutError) and LayoutTimeout("x").exit_code == 1


def test_graphviz_failing_in_the_cli_exits_1_on_one_line(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import resprobe.render.dot as dot
    from resprobe.cli import main

    crash = "sys.stderr.write('Error: out of memory\\n'); os.kill(os.getpid(), signal.SIGSEGV)"
    monkeypatch.setattr(dot, "renderer", lambda: _fake_layout_program(tmp_path, crash))
    result = CliRunner().invoke(main, ["graph", "-o", str(tmp_path / "g.svg"), "-q"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: Graphviz failed: Error: out of memory")
    assert not (tmp_path / "g.svg").exists()
    with pytest.raises(resprobe.UsageError, match="no output format 'bogus'"):
        render("digraph { a -> b }", "bogus")


def test_a_report_keeps_the_dot_source_when_the_layout_fails(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import resprobe.render.dot as dot

    crash = "sys.stderr.write('Error: out of memory\\n'); os.kill(os.getpid(), signal.SIGSEGV)"
    monkeypatch.setattr(dot, "renderer", lambda: _fake_layout_program(tmp_path, crash))
    page = resprobe.report_html(_structure("identity_mlp"))
    assert "Graphviz failed: Error: out of memory" in page and "<pre>digraph" in page
