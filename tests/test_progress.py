"""Progress on stderr: a line when each long phase starts, a bar labelled with the phase on a
terminal, nothing under -q and nothing on stdout."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import resprobe
from resprobe.cli import _Progress, main


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _bars(text: str) -> list[tuple[str, str]]:
    """Each bar's label and how far it got, as last drawn."""
    lines = [re.sub(r"\x1b\[\?25[lh]", "", line).rsplit("\r", 1)[-1] for line in text.split("\n")]
    return [(line.split()[0], line.split()[-1]) for line in lines if "[" in line]


def test_analyze_says_which_phase_it_is_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["analyze", "-o", "r"])
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    for line in ["capturing one forward pass of DigitsResNet and finding blocks",
                 "verifying every block on real values",
                 "measuring every block: one instrumented forward and backward pass per batch",
                 "measuring the effective depth of each stream",
                 "deleting blocks one at a time and k at a time (lesions)"]:
        assert line in lines
    assert lines.index("verifying every block on real values") < lines.index(
        "deleting blocks one at a time and k at a time (lesions)")
    assert "measuring" not in result.stdout and "verifying" not in result.stdout
    quiet = CliRunner().invoke(main, ["analyze", "-o", "r", "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert quiet.stdout.splitlines()[0] == result.stdout.splitlines()[0]


def test_json_output_stays_json_while_progress_goes_to_stderr() -> None:
    result = CliRunner().invoke(main, ["blocks", "--json"])
    assert result.exit_code == 0
    assert len(json.loads(result.stdout)) == 6
    assert "verifying 6 block(s) on real values" in result.stderr


def test_a_phase_labels_the_bar_of_its_steps() -> None:
    shown = _Terminal()
    progress = _Progress(shown)
    with progress.phase("lesions"):
        for k in range(1, 25):
            progress(k, 24)
    with progress.phase("depth"):
        with progress.phase("measuring"):  # the shared measurement, run by the depth probe
            for k in range(1, 4):
                progress(k, 3)
        for k in range(1, 6):
            progress(k, 5)
        progress(1, 1)  # a single step: no bar
    text = shown.getvalue()
    assert text.startswith("deleting blocks one at a time and k at a time (lesions)\n")
    assert _bars(text) == [("lesions", "24/24"), ("measuring", "3/3"), ("depth", "5/5")]
    assert "measuring the effective depth of each stream" in text


def test_off_a_terminal_only_the_phase_lines_show() -> None:
    shown = io.StringIO()
    progress = _Progress(shown)
    with progress.phase("measuring"):
        for k in range(1, 9):
            progress(k, 8)
    with progress.phase("attribution"):  # a plugin probe's phase
        pass
    assert shown.getvalue().splitlines() == [
        "measuring every block: one instrumented forward and backward pass per batch", "running attribution"]


def test_the_measurement_reports_its_batches_as_a_phase(tmp_path: Path) -> None:
    """Through the Python API: ``analyze(..., progress=)`` with an object that can show
    phases gets the measurement as the ``measuring`` phase; a plain callable just its steps."""
    loaded = resprobe.load("resprobe.examples:digits_resnet")
    torch.save(torch.randn(12, 1, 8, 8), tmp_path / "x.pt")
    data = resprobe.load_data(str(tmp_path / "x.pt"), loaded.inputs or resprobe.Inputs(), batch_size=4)
    shown = _Terminal()
    resprobe.analyze(loaded, data=data, probes=("refinement", "gradients"), progress=_Progress(shown))
    text = shown.getvalue()
    assert text.count("measuring every block") == 1
    assert _bars(text) == [("measuring", "3/3")]
    steps: list[tuple[int, int]] = []
    resprobe.analyze(loaded, data=data, probes=("refinement",), progress=lambda d, t: steps.append((d, t)))
    assert steps == [(1, 3), (2, 3), (3, 3)]
