"""The tuned lens on the trained byte-level LM: translators fitted on windows of the standard
library's training files read the held-out example batch better than the logit lens; the
translators file round-trips and is refitted when it does not fit; the model is left bit for bit
as found; a CNN's feature maps are not translated."""

from __future__ import annotations

import pathlib
import sysconfig
from typing import Any

import pytest
import torch

import resprobe
import resprobe.tuned_lens as tl
from resprobe.tuned_lens import tuned_lens


@pytest.fixture(scope="module")
def lm() -> tuple[resprobe.Loaded, resprobe.Graph, list[resprobe.Block]]:
    loaded = resprobe.load("resprobe.examples:small_lm")
    graph = resprobe.capture(loaded.model, loaded.inputs)
    return loaded, graph, resprobe.find_blocks(graph)


def _windows(path: pathlib.Path, count: int = 64) -> pathlib.Path:
    """``count`` windows of 128 bytes, each from a training file of the LM (the example batch
    is from the held-out files: every 10th, scripts/train_lm.py), as a --data tensor file."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if not p.name.startswith("_sysconfigdata"))
    train = [p for i, p in enumerate(files) if i % 10 != 9]
    rows = []
    for p in train[::max(1, len(train) // count)]:
        text = p.read_bytes()
        if len(text) >= 3 * 128:
            rows.append(list(text[len(text) // 3:len(text) // 3 + 128]))
    torch.save({"input_ids": torch.tensor(rows[:count])}, path)
    return path


def _tuned(got: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return {n: (v["kl_to_final"], v["tuned_kl_to_final"]) for n, v in got["blocks"].items()}


@pytest.fixture(scope="module")
def fitted(lm: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One fit on the training windows (default steps), the model's state before and after."""
    loaded, graph, blocks = lm
    folder = tmp_path_factory.mktemp("tuned")
    data = resprobe.load_data(str(_windows(folder / "windows.pt")), loaded.inputs, batch_size=8)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    flags = {k: p.requires_grad for k, p in loaded.model.named_parameters()}
    path = folder / "translators.pt"
    got = tuned_lens(loaded.model, graph, blocks, data, translators=str(path))
    return {"got": got, "data": data, "path": path, "before": before, "flags": flags}


def test_the_tuned_lens_beats_the_logit_lens_on_held_out_bytes(lm: Any, fitted: dict[str, Any]) -> None:
    loaded, graph, blocks = lm
    fit = fitted["got"]
    summary = fit["tuned"]
    assert summary["fitted"] and summary["blocks"] == 7 and summary["steps"] == tl.DEFAULT_STEPS
    held = tuned_lens(loaded.model, graph, blocks, resprobe.example_data(loaded.inputs),
                      translators=str(fitted["path"]))
    assert held["tuned"]["loaded"] and not held["tuned"]["fitted"]
    rows = list(zip(_tuned(fit).items(), _tuned(held).values()))
    print("\nblock            fit data: logit  tuned   held out: logit  tuned")
    for (name, (a, b)), (c, d) in rows:
        print(f"{name:16s} {a:15.4f} {b:6.4f} {c:16.4f} {d:6.4f}")
    numbers = list(_tuned(held).values())
    for logit, tuned in numbers[:2]:  # the early layers, on bytes the translators never saw
        assert tuned < 0.6 * logit
    assert all(tuned < logit for logit, tuned in numbers[:-1])
    assert numbers[-1] == (0.0, 0.0)
    first = held["blocks"]["blocks.0.attn"]
    assert first["tuned_top1_agreement"] > first["top1_agreement"] + 0.1
    assert list(first) == ["kl_to_final", "top1_agreement", "entropy", "loss", "tuned_kl_to_final",
                           "tuned_top1_agreement", "units"]


def test_the_model_is_left_bit_for_bit_as_found(lm: Any, fitted: dict[str, Any]) -> None:
    model = lm[0].model
    assert all(torch.equal(fitted["before"][k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None and p.requires_grad == fitted["flags"][k] for k, p in model.named_parameters())


def test_a_second_run_reads_the_translators_and_fits_nothing(lm: Any, fitted: dict[str, Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    loaded, graph, blocks = lm
    fits = []
    real = tl._Fit._fit
    monkeypatch.setattr(tl._Fit, "_fit", lambda self, *a: fits.append(1) or real(self, *a))
    again = tuned_lens(loaded.model, graph, blocks, fitted["data"], translators=str(fitted["path"]))
    assert not fits and again["tuned"]["loaded"] and not again["tuned"]["fitted"]
    assert again["tuned"]["steps"] == tl.DEFAULT_STEPS and not again["notes"]
    assert _tuned(again) == _tuned(fitted["got"])  # the same numbers, to the bit
    saved = torch.load(fitted["path"], weights_only=True)
    assert saved["format"] == tl.FORMAT and saved["blocks"] == sorted(n for n in saved["weights"])
    assert len(saved["blocks"]) == 7 and saved["weights"]["blocks.0.attn"].shape == (128, 128)


def test_translators_that_do_not_fit_are_fitted_again(lm: Any, fitted: dict[str, Any],
                                                      tmp_path: pathlib.Path) -> None:
    loaded, graph, blocks = lm
    wrong = torch.load(fitted["path"], weights_only=True)
    wrong["weights"]["blocks.1.mlp"] = torch.zeros(64, 64)
    path = tmp_path / "t.pt"
    torch.save(wrong, path)
    data = resprobe.example_data(loaded.inputs)
    got = tuned_lens(loaded.model, graph, blocks, data, steps=5, translators=str(path))
    assert got["tuned"]["fitted"] and not got["tuned"]["loaded"] and got["tuned"]["steps"] == 5
    assert "not a translator of width 128" in got["notes"][0] and "fitted again" in got["notes"][0]
    assert tuned_lens(loaded.model, graph, blocks, data, steps=5, translators=str(path))["tuned"]["loaded"]

    twin = resprobe.load("resprobe.examples:small_lm_random")  # same blocks and shapes, other weights
    twin_graph = resprobe.capture(twin.model, twin.inputs)
    other = tuned_lens(twin.model, twin_graph, resprobe.find_blocks(twin_graph), data, steps=5,
                       translators=str(path))
    assert other["tuned"]["fitted"] and "fitted for other weights" in other["notes"][0]


def test_a_cnn_says_its_feature_maps_are_not_tuned(tmp_path: pathlib.Path) -> None:
    loaded = resprobe.load("resprobe.examples:digits_resnet")
    graph = resprobe.capture(loaded.model, loaded.inputs)
    got = tuned_lens(loaded.model, graph, resprobe.find_blocks(graph), resprobe.example_data(loaded.inputs),
                     translators=str(tmp_path / "t.pt"))
    measured = {n: v for n, v in got["blocks"].items() if "not_measured" not in v}
    assert measured and all(v["tuned_kl_to_final"] is None and v["kl_to_final"] is not None
                            for v in measured.values())
    (note,) = got["notes"]
    assert f"{len(measured)} block(s) not tuned" in note and "[C, H, W]" in note
    assert not got["tuned"]["fitted"] and not (tmp_path / "t.pt").exists()


def test_the_probe_takes_its_options(tmp_path: pathlib.Path) -> None:
    loaded = resprobe.load("resprobe.examples:small_lm")
    settings = resprobe.Settings().with_options({"lens": "tuned", "lens_steps": 20,
                                                 "lens_translators": str(tmp_path / "t.pt")})
    report = resprobe.analyze(loaded, probes=("lens",), settings=settings)
    result = report.result("lens")
    assert result is not None and result.summary["tuned"]["steps"] == 20 and result.summary["tuned"]["fitted"]
    first = report.blocks[0].metrics.lens
    assert first is not None and first.tuned_kl_to_final is not None
    assert first.tuned_kl_to_final < first.kl_to_final and (tmp_path / "t.pt").exists()
    plain = resprobe.analyze(loaded, probes=("lens",)).blocks[0].metrics.lens
    assert plain is not None and plain.tuned_kl_to_final is None and plain.kl_to_final == first.kl_to_final


class _Residual(torch.nn.Module):
    def __init__(self, f: torch.nn.Module) -> None:
        super().__init__()
        self.f = f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x)


def test_a_fit_that_diverges_leaves_the_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Linear(4, 16), _Residual(nn.Sequential(nn.Linear(16, 16), nn.Tanh())),
                          _Residual(nn.Linear(16, 16)), nn.Linear(16, 10)).eval()
    inputs = resprobe.Inputs((torch.randn(64, 4),))
    graph = resprobe.capture(model, inputs)
    monkeypatch.setattr(tl, "_LR", 1e4)  # steps far too long
    got = tuned_lens(model, graph, resprobe.find_blocks(graph), resprobe.example_data(inputs),
                     objective="self-ce", steps=3)
    first = got["blocks"]["1.f"]
    assert first["tuned_kl_to_final"] == first["kl_to_final"] > 0
    assert "did not improve on the logit lens for 1 block(s) (1.f)" in got["notes"][0]


class _Payload:
    """A pickle that would write a file when unpickled by a loader that runs code."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (pathlib.Path.write_text, (str(self.marker), "ran"))  # type: ignore[return-value]


def test_a_hostile_translators_file_runs_nothing(lm: Any, tmp_path: pathlib.Path) -> None:
    """The translators file is read as plain data (weights_only): a pickle that runs code on load
    is refused as not a translators file and fitted again; nothing of it runs."""
    import pickle

    loaded, graph, blocks = lm
    marker, path = tmp_path / "ran.txt", tmp_path / "t.pt"
    path.write_bytes(pickle.dumps({"format": 1, "weights": _Payload(marker)}))
    got = tuned_lens(loaded.model, graph, blocks, resprobe.example_data(loaded.inputs), steps=3,
                     translators=str(path))
    assert not marker.exists()
    assert got["tuned"]["fitted"] and "not a translators file" in got["notes"][0]


def test_the_lens_does_not_depend_on_the_batching() -> None:
    from resprobe.examples import digits_test_path
    from resprobe.lens import lens

    loaded = resprobe.load("resprobe.examples:digits_vit")
    graph = resprobe.capture(loaded.model, loaded.inputs)
    blocks = resprobe.find_blocks(graph)
    runs = [lens(loaded.model, graph, blocks, resprobe.load_data(digits_test_path(), loaded.inputs,
                                                               batch_size=size))["blocks"]
            for size in (360, 50)]
    for name, one in runs[0].items():
        for key in ("kl_to_final", "top1_agreement", "entropy", "loss"):
            assert runs[1][name][key] == pytest.approx(one[key], rel=1e-5, abs=1e-7), (name, key)
