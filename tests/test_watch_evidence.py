"""docs/gallery/watch-digits.md says what its files say: the watched record of the residual network
(resprobe-run.jsonl) and the hooked gradient norms of both networks (gradients.json), as written by
scripts/watch_evidence.py. No training here: every number is recomputed from the committed files,
the record read as plain JSON."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
GALLERY = ROOT / "docs" / "gallery"
RESNET = GALLERY / "watch-digits-deep-resnet"
PLAIN = GALLERY / "watch-digits-deep-plain"
PAGE = GALLERY / "watch-digits.md"
BLOCKS = [f"layers.{i}" for i in range(24)]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("watch_evidence", ROOT / "scripts" / "watch_evidence.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def record() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run header and its step lines, straight from the JSON lines."""
    lines = [json.loads(x) for x in (RESNET / "resprobe-run.jsonl").read_text(encoding="utf-8").splitlines()
             if x.strip()]
    assert lines[0]["kind"] == "run" and all(x["kind"] == "step" for x in lines[1:])
    return lines[0], lines[1:]


@pytest.fixture(scope="module")
def steps(record: tuple[dict[str, Any], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return record[1]


def _json(path: Path) -> dict[str, Any]:
    got: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return got


@pytest.fixture(scope="module")
def resnet() -> dict[str, Any]:
    return _json(RESNET / "gradients.json")


@pytest.fixture(scope="module")
def plain() -> dict[str, Any]:
    return _json(PLAIN / "gradients.json")


@pytest.fixture(scope="module")
def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def _table(page: str, tag: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the table after ``<!-- table:tag -->``."""
    marker = f"<!-- table:{tag} -->"
    assert page.count(marker) == 1, marker
    rows = []
    for line in page.split(marker, 1)[1].lstrip("\n").splitlines():
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    assert len(rows) >= 2 and set("".join(rows[1])) <= set("- "), rows[:2]
    return rows[0], rows[2:]


def _glance(page: str) -> dict[str, list[str]]:
    return {r[0]: r[1:] for r in _table(page, "glance")[1]}


def _chosen(steps: list[dict[str, Any]]) -> list[int]:
    n = len(steps)
    return sorted({0, (n - 1) // 2, n - 1})


def _norm(step: dict[str, Any], block: str) -> float:
    v = step["blocks"][block]["grad_norm"]
    assert isinstance(v, float) and v > 0, (step["step"], block, v)
    return v


def _close(shown: str, value: float, rel: float = 6e-4) -> bool:
    return abs(float(shown) - value) <= rel * abs(value) + 1e-12


def test_the_page_is_what_the_script_writes_from_these_files(page: str) -> None:
    module = _script()
    assert module.page(*module.load(GALLERY)) == page, (
        "docs/gallery/watch-digits.md is out of date: run python scripts/watch_evidence.py --page")


def test_the_run_report_is_current_and_linked(page: str) -> None:
    from resprobe.render.run import run_html, run_markdown
    from resprobe.runlog import read_run

    assert (RESNET / "run-report.md").read_text(encoding="utf-8") == run_markdown(read_run(RESNET))
    html = (RESNET / "standalone.html").read_text(encoding="utf-8")
    assert html == run_html(read_run(RESNET))
    assert not (RESNET / "run-report.html").exists()  # the docs site builds it from run-report.md
    assert "](watch-digits-deep-resnet/run-report.md)" in page
    assert "](watch-digits-deep-resnet/standalone.html)" in page


def test_same_steps_and_the_stated_recipe(record: tuple[dict[str, Any], list[dict[str, Any]]],
                                          resnet: dict[str, Any], plain: dict[str, Any], page: str) -> None:
    header, steps = record
    every = header["every"]
    numbers = [s["step"] for s in steps]
    assert [b["name"] for b in header["blocks"]] == BLOCKS and {b["stream"] for b in header["blocks"]} == {0}
    assert numbers == list(range(0, resnet["steps_total"], every))  # every due step, none missed
    assert 40 <= len(steps) <= 80
    assert [s["step"] for s in resnet["steps"]] == numbers == [s["step"] for s in plain["steps"]]
    assert resnet["steps_total"] == plain["steps_total"] and resnet["epochs"] == plain["epochs"]
    assert f"`resprobe.watch(model, every={every}, iterative=True)`: {len(steps)} measured steps, " \
           f"{numbers[0]} to {numbers[-1]}" in page
    recipe = f"over {resnet['epochs']} epochs, batches of {resnet['batch']}: {resnet['steps_total']} steps"
    assert recipe in page
    # iterative=True: the iterative numbers were recorded (identity-shaped blocks)
    assert all(isinstance(s["blocks"]["layers.1"]["iterative_cos"], float) for s in steps)


def test_hooks_on_the_residual_network_agree_with_watch(steps: list[dict[str, Any]],
                                                          resnet: dict[str, Any], page: str) -> None:
    worst = 0.0
    for s, h in zip(steps, resnet["steps"]):
        for b, v in zip(BLOCKS, h["grad_norm"]):
            worst = max(worst, abs(_norm(s, b) - v))
    assert worst <= 5e-9 * (1 + 1e-6)  # watch stores 8 decimal places: the whole difference
    assert f"agree with watch's numbers to {worst:.1e} at most" in page


def test_effective_depth_as_stated(steps: list[dict[str, Any]], page: str) -> None:
    depth = [s["streams"][0]["effective_depth"] for s in steps]
    assert all(isinstance(d, float) for d in depth)
    first, last = depth[0], depth[-1]
    stated = _glance(page)["effective depth, first → last measured step"][0]
    assert stated == f"{first:.2f} → {last:.2f} of 24"
    assert last < 24 / 2 and "At the end, under half of the 24 blocks" in page
    assert f"ranged from {min(depth):.2f} to {max(depth):.2f}" in page
    by_step = {s["step"]: s["streams"][0] for s in steps}
    _, rows = _table(page, "depth")
    assert int(rows[0][0]) == steps[0]["step"] and int(rows[-1][0]) == steps[-1]["step"]
    for number, shown, window in rows:
        stream = by_step[int(number)]
        assert abs(float(shown) - stream["effective_depth"]) <= 0.005 + 1e-9
        assert window == str(stream["window"])


def test_gradient_table_is_the_records(steps: list[dict[str, Any]], plain: dict[str, Any], page: str) -> None:
    ks = _chosen(steps)
    headers, rows = _table(page, "gradients")
    numbers = [steps[k]["step"] for k in ks]
    assert headers == ["block", *(f"residual, step {n}" for n in numbers),
                       *(f"plain, step {n}" for n in numbers)]
    assert [r[0] for r in rows] == BLOCKS
    for i, (b, *cells) in enumerate(rows):
        want = [_norm(steps[k], b) for k in ks] + [plain["steps"][k]["grad_norm"][i] for k in ks]
        assert all(_close(c, w) for c, w in zip(cells, want, strict=True)), (b, cells, want)


def _trend(r: float) -> str:
    return "vanishing towards the input" if r < 0.5 else "growing towards the input" if r > 2 \
        else "roughly flat along depth"


def test_first_over_last_block_ratios_and_what_they_are_called(steps: list[dict[str, Any]],
                                                               plain: dict[str, Any], page: str) -> None:
    glance = _glance(page)
    ratios = []
    for k in _chosen(steps):
        s = steps[k]
        res = _norm(s, "layers.0") / _norm(s, "layers.23")
        pl = plain["steps"][k]["grad_norm"][0] / plain["steps"][k]["grad_norm"][-1]
        shown = glance[f"gradient norm, first block / last block, step {s['step']}"]
        assert abs(float(shown[0]) - res) <= 5e-4 and abs(float(shown[1]) - pl) <= 5e-4
        line = next(x for x in page.splitlines() if x.startswith(f"- step {s['step']}: "))
        said_res, said_plain = line.split("; plain ")
        assert _trend(res) in said_res and _trend(pl) in said_plain, line
        ratios.append((res, pl))
    # the sentence on the plain network at initialisation
    (res0, pl0), (res_end, _) = ratios[0], ratios[-1]
    said = "At initialisation the plain network's gradient grows towards the input"
    assert (said in page) == (pl0 > 2 and pl0 > 10 * res0)
    assert said in page  # this run: the plain network's gradient explodes towards the input at first
    assert res_end < res0  # the residual network's gradient flattens along depth as it trains


def test_branch_gains_as_stated(steps: list[dict[str, Any]], page: str) -> None:
    ks = _chosen(steps)
    headers, rows = _table(page, "gains")
    assert headers == ["blocks", *(f"step {steps[k]['step']}" for k in ks)]
    for g, (label, *cells) in enumerate(rows):
        assert label == f"{8 * g + 1}–{8 * g + 8}"
        for k, cell in zip(ks, cells, strict=True):
            got = [steps[k]["blocks"][b]["branch_gain"] for b in BLOCKS[8 * g:8 * g + 8]]
            assert abs(float(cell) - sum(got) / len(got)) <= 5e-4 + 1e-9
    value, block, step = max((s["blocks"][b]["branch_gain"], b, s["step"]) for s in steps for b in BLOCKS)
    assert f"The largest single value of the run: {value:.2f} ({block}, step {step})." in page


def test_role_changes_as_stated(steps: list[dict[str, Any]], page: str) -> None:
    changes = []
    for b in BLOCKS:
        last = None
        for s in steps:
            now = s["blocks"][b]["label"]
            if now is not None:
                if last is not None and now != last:
                    changes.append([b, last, now, str(s["step"])])
                last = now
    assert changes, "the page's roles table needs at least one change"
    assert _table(page, "roles")[1] == changes
    blocks = len({c[0] for c in changes})
    assert f"{len(changes)} label change(s) in {blocks} of 24 blocks" in page
    for k in _chosen(steps):
        labels = [steps[k]["blocks"][b]["label"] for b in BLOCKS]
        said = ", ".join(f"{labels.count(x)} {x}" for x in ("refine", "rebuild", "idle") if labels.count(x))
        assert f"step {steps[k]['step']}: {said}" in page


def test_accuracy_and_training_curves(resnet: dict[str, Any], plain: dict[str, Any], page: str) -> None:
    glance = _glance(page)
    stated = glance["held-out accuracy after training"]
    assert stated == [f"{resnet['accuracy']:.3f}", f"{plain['accuracy']:.3f}"]
    assert all(net["accuracy"] == net["curve"][-1]["accuracy"] for net in (resnet, plain))
    assert resnet["accuracy"] > 0.95 and resnet["accuracy"] > plain["accuracy"]
    _, rows = _table(page, "training")
    assert len(rows) == resnet["epochs"] == len(resnet["curve"]) == len(plain["curve"])
    for row, a, b in zip(rows, resnet["curve"], plain["curve"]):
        assert row == [str(a["epoch"]), f"{a['train_loss']:.4f}", f"{a['accuracy']:.3f}",
                       f"{b['train_loss']:.4f}", f"{b['accuracy']:.3f}"]


def test_the_page_does_not_state_numbers_it_does_not_compute(page: str) -> None:
    """Every table on the page is one the tests above recompute."""
    tables = set(re.findall(r"<!-- table:(\w+) -->", page))
    assert tables == {"glance", "depth", "gains", "roles", "gradients", "training"}
