"""What resprobe writes is safe and whole: the report folder is replaced whole or not at all,
foreign files are never deleted, report.md renders model names as text, report.json is strict JSON."""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from torch import Tensor, nn

import resprobe
from resprobe import exporters
from resprobe.cli import main
from resprobe.examples import digits_resnet
from resprobe.report import check_output_dir

ALL = ("json", "html", "md", "svg")
SCRIPT = "<script>alert(1)</script>"
LINK = "[x](javascript:alert(1))"
IMAGE = "![i](http://evil.example/x.png)"
IMG = "<img src=x onerror=alert(1)>"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


class Chain(nn.Module):
    """x + f(x) for each child in turn; the children may be named anything."""

    def __init__(self, names: tuple[str, ...] = ("a", "b")) -> None:
        super().__init__()
        for name in names:
            self.add_module(name, nn.Linear(4, 4))

    def forward(self, x: Tensor) -> Tensor:
        for child in self.children():
            x = x + child(x)
        return x


def _named(class_name: str, names: tuple[str, ...] = ("a", "b")) -> nn.Module:
    cls = type(class_name, (Chain,), {})
    model: nn.Module = cls(names)
    return model


def _report(class_name: str) -> resprobe.Report:
    torch.manual_seed(0)
    loaded = resprobe.Loaded(_named(class_name), resprobe.Inputs((torch.randn(2, 4),)))
    return resprobe.analyze(loaded, probes=())


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(parent: Path, keep: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name != keep)


def _model_of_every_file(folder: Path) -> set[str]:
    """The model class each file of a report set names."""
    found = {json.loads((folder / "report.json").read_text())["model"]["class"]}
    html = (folder / "report.html").read_text()
    found.add(html.split("<h1>resprobe report: ")[1].split("</h1>")[0])
    found.add((folder / "report.md").read_text().splitlines()[0].removeprefix("# resprobe report: "))
    found.add((folder / "report.dot").read_text().split('"')[1] if (folder / "report.dot").exists()
              else next(iter(found)))
    return found


# --- (a)-(c) a report folder is replaced whole -----------------------------------------------------


def test_ctrl_c_while_writing_keeps_the_previous_report(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    _report("OldModel").save(out, ALL)
    before = _files(out)

    def interrupted(self: Any, report: resprobe.Report, directory: Path) -> Path:
        (Path(directory) / "report.md").write_text("# resprobe report: New", encoding="utf-8")
        raise KeyboardInterrupt

    monkeypatch.setattr(exporters.MarkdownExporter, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _report("NewModel").save(out, ALL)
    assert _files(out) == before
    assert _leftovers(tmp_path, "out") == []


def test_ctrl_c_during_the_swap_waits_until_the_new_report_is_in_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    import resprobe._save as report_module

    out = tmp_path / "out"
    _report("OldModel").save(out, ALL)
    real = report_module._fsync

    def interrupted(path: Path) -> None:  # the last step of the swap: the user presses Ctrl-C
        if path == out.parent:
            signal.raise_signal(signal.SIGINT)
        real(path)

    monkeypatch.setattr(report_module, "_fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _report("NewModel").save(out, ALL)
    assert _model_of_every_file(out) == {"NewModel"}
    assert _leftovers(tmp_path, "out") == []


def test_a_new_report_replaces_an_older_one_wholly(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _report("OldModel").save(out, ALL)
    written = _report("NewModel").save(out, ("json", "html", "md"))
    assert [p.name for p in written] == ["report.json", "report.html", "report.md"]
    assert all(p.parent == out for p in written)
    assert _model_of_every_file(out) == {"NewModel"}
    assert "OldModel" not in b"".join(_files(out).values()).decode()
    assert _leftovers(tmp_path, "out") == []
    _report("Third").save(out, ("json",))
    assert sorted(_files(out)) == ["report.json"]  # nothing of the earlier sets is left


def test_concurrent_saves_into_one_folder_end_with_one_whole_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    reports = [_report("FirstModel"), _report("SecondModel")]
    errors: list[BaseException] = []
    for _ in range(3):
        barrier = threading.Barrier(len(reports))

        def save(report: resprobe.Report, barrier: threading.Barrier = barrier) -> None:
            try:
                barrier.wait()
                report.save(out, ("json", "html", "md"))
            except BaseException as err:  # noqa: BLE001 - reported by the assert below
                errors.append(err)

        threads = [threading.Thread(target=save, args=(r,)) for r in reports]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(_model_of_every_file(out)) == 1
        assert _leftovers(tmp_path, "out") == []


def test_a_saved_folder_has_the_usual_permissions(tmp_path: Path) -> None:
    _report("M").save(tmp_path / "new", ("json",))
    os.mkdir(tmp_path / "plain")
    assert (tmp_path / "new").stat().st_mode == (tmp_path / "plain").stat().st_mode


# --- (d) unusable -o: refused before the analysis, nothing of the user's touched ------------------


@pytest.fixture
def no_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    import resprobe.cli as cli

    def never(*args: Any, **kwargs: Any) -> Any:
        pytest.fail("the model was loaded or analysed before -o was checked")

    monkeypatch.setattr(cli, "run_analysis", never)
    monkeypatch.setattr(cli._Session, "prepare", never)


def _refused(out: Path, message: str) -> None:
    code, stdout, err = run("analyze", "-o", str(out), "-q")
    assert code == 2, err
    assert stdout == "" and err.count("\n") == 1 and err.startswith("error: ") and message in err


@pytest.mark.usefixtures("no_analysis")
def test_o_naming_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "report"
    target.write_text("mine", encoding="utf-8")
    _refused(target, "it is a file, not a folder; choose a new or empty folder with -o")
    assert target.read_text() == "mine"
    _refused(target / "sub", "is a file, not a folder")
    assert _leftovers(tmp_path, "report") == []


@pytest.mark.usefixtures("no_analysis")
def test_a_folder_with_other_files_is_refused_and_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}", encoding="utf-8")
    (out / "notes.txt").write_text("my notes", encoding="utf-8")
    _refused(out, "the folder holds other files, e.g. notes.txt; choose a new or empty folder with -o")
    assert _files(out) == {"notes.txt": b"my notes", "report.json": b"{}"}
    (out / "notes.txt").unlink()
    (out / "report-charts" / "mine").mkdir(parents=True)
    _refused(out, "e.g. report-charts/mine/")
    assert (out / "report-charts" / "mine").is_dir()
    assert _leftovers(tmp_path, "out") == []


@pytest.mark.usefixtures("no_analysis")
def test_an_unwritable_place_is_refused(tmp_path: Path) -> None:
    if sys.platform.startswith("linux"):  # /proc takes no new folders, even from root
        _refused(Path("/proc/resprobe-nowhere/out"), "cannot create a folder in /proc")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            _refused(locked / "out", f"cannot create a folder in {locked}")
        finally:
            locked.chmod(0o700)
        assert list(locked.iterdir()) == []


@pytest.mark.usefixtures("no_analysis")
def test_the_current_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _refused(Path("."), "it is (or holds) the current folder")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_foreign_files_too(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("my notes", encoding="utf-8")
    with pytest.raises(resprobe.UsageError, match="holds other files, e.g. notes.txt"):
        _report("M").save(tmp_path, ALL)
    assert _files(tmp_path) == {"notes.txt": b"my notes"}
    check_output_dir(tmp_path / "new" / "deeper")  # missing parents are fine, and not made
    assert not (tmp_path / "new").exists()


# --- (e) report.md shows what the model names as text -----------------------------------------------


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text += data


def _page(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _assert_inert_markdown(md: str, hostile: list[str]) -> None:
    import markdown

    for extensions in (["tables"], ["tables", "attr_list"]):
        page = _page(markdown.markdown(md, extensions=extensions))
        for tag, attrs in page.tags:
            assert tag not in ("script", "iframe", "object"), tag
            assert not any(k.startswith("on") for k in attrs), (tag, attrs)
            if tag == "img":  # resprobe's own images only: local SVG files beside report.md
                src = attrs["src"]
                assert src.endswith(".svg") and ":" not in src and not src.startswith("/"), src
            assert not attrs.get("href", "").startswith("javascript:"), attrs
            assert not any("evil" in v for v in attrs.values()), attrs
        for text in hostile:  # rendered as the literal text it is
            assert text in page.text, text


def _assert_inert_html(html: str) -> None:
    page = _page(html)
    assert [t for t, _ in page.tags].count("script") == 2  # resprobe's own: sorting, pan and zoom
    for tag, attrs in page.tags:
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        for key in ("src", "href", "xlink:href"):
            assert not attrs.get(key, "").startswith("javascript:") and "evil" not in attrs.get(key, "")


def test_markdown_escapes_everything_from_the_model(tmp_path: Path) -> None:
    names = ("x" + SCRIPT, IMG, LINK, "a_b*c*`d`{: onclick=alert(1)} #")
    torch.manual_seed(0)
    model = _named(SCRIPT + IMAGE + " C#", names)
    loaded = resprobe.Loaded(model, resprobe.Inputs((torch.randn(2, 4),)), source="hostile " + LINK,
                             notes=(f"checkpoint key {IMAGE} {SCRIPT}", "line\nbreak | pipe"))
    report = resprobe.analyze(loaded, probes=("verify", "refinement"))
    report = replace(report, notes=(*report.notes, f"{LINK} & {IMG}"))
    report.save(tmp_path, ALL)
    md = (tmp_path / "report.md").read_text()
    assert "![refinement view](report.svg)" in md and "](report-charts/update_ratio.svg)" in md
    _assert_inert_markdown(md, [SCRIPT + IMAGE + " C#", "x" + SCRIPT, IMG, LINK, names[3],
                                f"checkpoint key {IMAGE} {SCRIPT}", "line break | pipe", f"{LINK} & {IMG}"])
    _assert_inert_html((tmp_path / "report.html").read_text())


def hostile_model() -> resprobe.Loaded:
    """A model whose class and module names are markup (for the CLI test below)."""
    torch.manual_seed(0)
    model = _named(SCRIPT + IMAGE, ("x" + SCRIPT, IMG, LINK))
    return resprobe.Loaded(model, resprobe.Inputs((torch.randn(2, 4),)), notes=(f"note {IMAGE}",))


def test_markdown_from_the_cli_is_inert(tmp_path: Path) -> None:
    code, _, err = run("analyze", "test_output_safety:hostile_model", "-o", str(tmp_path / "r"), "-q")
    assert code == 0, err
    md = (tmp_path / "r" / "report.md").read_text()
    _assert_inert_markdown(md, [SCRIPT + IMAGE, "x" + SCRIPT, IMG, LINK, f"note {IMAGE}"])
    _assert_inert_html((tmp_path / "r" / "report.html").read_text())


# --- (f) NaN and inf: strict JSON, a note that says where, exit 0 -----------------------------------


def _poisoned(value: float) -> resprobe.Loaded:
    loaded = digits_resnet()
    with torch.no_grad():
        dict(loaded.model.named_parameters())["layers.2.conv1.weight"].view(-1)[0] = value
    return loaded


def nan_model() -> resprobe.Loaded:
    return _poisoned(float("nan"))


def inf_model() -> resprobe.Loaded:
    return _poisoned(float("inf"))


@pytest.mark.parametrize("source", ["nan_model", "inf_model"])
def test_non_finite_weights_give_strict_json_and_a_note(tmp_path: Path, source: str) -> None:
    code, _, err = run("analyze", f"test_output_safety:{source}", "-o", str(tmp_path / "r"), "-q")
    assert code == 0, err
    text = (tmp_path / "r" / "report.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in report.json"))
    results = {r["probe"]: r for r in data["results"]}
    assert set(results) == {"verify", "refinement", "gradients", "depth", "lesion", "lens"}
    assert any(n.startswith("lesion: non-finite values written as null: ") and "loss_change" in n
               and n.endswith("the model produced NaN or inf") for n in results["lesion"]["notes"])
    assert any("update_ratio in layers.2" in n for n in results["refinement"]["notes"])
    verify = results["verify"]
    assert verify["summary"]["passed"] == verify["summary"]["checked"] == 2
    assert verify["summary"]["unchecked"] == 4 and verify["blocks"]["layers.2"]["ok"] is None
    assert data["blocks"][2]["metrics"]["lesion"]["loss_change"] is None


def test_json_exporter_refuses_nan_and_writes_nothing(tmp_path: Path) -> None:
    report = _report("M")
    bad = replace(report, results=[resprobe.ProbeResult("x", {"v": float("nan")})])
    with pytest.raises(resprobe.UsageError, match="NaN or inf"):
        bad.save(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
