"""torchrun: data-parallel analysis. Each process measures its share of the batches, the sums are
added up, rank 0 writes: the report equals one process's on the same data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from resprobe.examples import digits_test_path

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
# every default probe (verify, refinement, gradients, depth, lesion, lens) with the exact profile and
# Veit's sampler: each splits its batches over the processes
ARGS = ["analyze", "resprobe.examples:digits_deep_resnet", "--data", digits_test_path(), "--batch-size", "60",
        "--exact", "--sample", "2", "-q", "--format", "json"]


def _numbers(x: Any, y: Any, path: str, out: list[tuple[str, float, Any]]) -> None:
    if isinstance(x, dict):
        for k, v in x.items():
            _numbers(v, y.get(k) if isinstance(y, dict) else None, f"{path}.{k}", out)
    elif isinstance(x, list):
        assert isinstance(y, list) and len(x) == len(y), path
        for k, (u, v) in enumerate(zip(x, y)):
            _numbers(u, v, f"{path}[{k}]", out)
    elif isinstance(x, float):
        out.append((path, x, y))
    else:
        assert x == y, path


def test_two_processes_give_the_report_of_one(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "resprobe", *ARGS, "-o", str(one)], check=True, capture_output=True)
    done = subprocess.run([*TORCHRUN, "-m", "resprobe", *ARGS, "-o", str(two)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("wrote ") == 1  # rank 0 writes and speaks; rank 1 is silent
    a, b = (json.loads((d / "report.json").read_text()) for d in (one, two))
    assert b["data"].pop("processes") == 2 and "processes" not in a["data"]
    assert a["data"] == b["data"] and a["data"]["measured_samples"] == 360
    found: list[tuple[str, float, Any]] = []
    _numbers(a["results"], b["results"], "results", found)
    assert len(found) > 1000
    probes = {path.split(".")[0] for path, _, _ in found}
    assert {"results[1]", "results[3]", "results[4]", "results[5]"} <= probes  # numbers of every probe
    for path, x, y in found:
        assert y == pytest.approx(x, rel=1e-6, abs=1e-12), path


def test_fewer_batches_than_processes_is_refused_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run([*TORCHRUN, "-m", "resprobe", "analyze", "resprobe.examples:digits_resnet", "-q",
                           "--probe", "refinement",
                           "-o", str(tmp_path / "r")], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "1 batch(es) for 2 processes" in done.stderr
    assert not (tmp_path / "r").exists()


def test_a_model_sharded_with_fsdp2_is_analysed_where_its_shards_live(tmp_path: Path) -> None:
    """FSDP2 on gloo: every process captures, verifies and measures the sharded model (FSDP
    gathers each block's weights for the pass), with the numbers of the same model unsharded;
    FSDP's hooks are left as found. Parameter-gradient norms are not measured (the weights are
    sharded between passes) and a note says so."""
    pytest.importorskip("torch.distributed.fsdp")
    sys.path.insert(0, str(Path(__file__).parent))
    import _fsdp_analyze as script

    done = subprocess.run([*TORCHRUN, str(Path(script.__file__)), str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    import resprobe

    want = script.numbers(resprobe.analyze(script.model(), script.inputs(), probes=script.PROBES))
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["hooks_as_found"] and got["verified"] == 4
        assert got["depth"] == pytest.approx(want["depth"], rel=1e-6)
        assert any("sharded by FSDP" in n for n in got["notes"])
        for name, values in want["blocks"].items():  # type: ignore[union-attr]
            for key, value in values.items():
                if key in ("param_grad_norm", "param_norm", "grad_weight_ratio"):
                    assert got["blocks"][name][key] is None
                elif isinstance(value, float):
                    assert got["blocks"][name][key] == pytest.approx(value, rel=1e-5), (name, key)
