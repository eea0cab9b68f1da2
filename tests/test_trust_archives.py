"""The loader's trust boundary for archives: an ExportedProgram is read from its JSON graph with
nothing unpickled or run; a TorchScript archive (whose loading runs code) needs --trust."""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import zoo
from click.testing import CliRunner

import resprobe
from resprobe import SourceError, find_blocks, load
from resprobe.cli import main

BLOCKS = 3  # zoo.PostActivationResNet: three post-activation residual blocks
Items = dict[str, bytes]


class Evil:
    """Unpickling this creates a marker file: the proof that code from the file ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


class SetstateWrites(torch.nn.Module):
    """Scripted, its ``__setstate__`` (run by ``torch.jit.load``) creates a marker file."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker
        self.scale = torch.ones(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, torch.Tensor, bool]:
        return (self.marker, self.scale, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, torch.Tensor, bool]) -> None:
        self.marker = state[0]
        self.training = state[2]
        written = torch.from_file(state[0], True, 8, dtype=torch.uint8).fill_(65)  # creates the file
        self.scale = state[1] + written[:2].float() * 0  # keeps the write alive


def _bytes_of(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _member(items: Items, suffix: str) -> str:
    return next(n for n in items if n.endswith(suffix))


def _pickled_sample_inputs(items: Items, marker: Path) -> None:
    items[_member(items, "/data/sample_inputs/model.pt")] = _bytes_of(Evil(marker))


def _pickled_weight(items: Items, marker: Path) -> None:
    """Mark the first weight ``use_pickle`` (torch.load(weights_only=False) at load) and make it a payload."""
    name = _member(items, "/data/weights/model_weights_config.json")
    config = json.loads(items[name])
    meta = next(iter(config["config"].values()))
    meta["use_pickle"] = True
    items[name] = json.dumps(config).encode()
    items[f"{name.rsplit('/', 1)[0]}/{meta['path_name']}"] = _bytes_of(Evil(marker))


def _opaque_constant(items: Items, marker: Path) -> None:
    """Add an opaque-object constant: torch.export.load reads it with pickle.loads."""
    name = _member(items, "/data/constants/model_constants_config.json")
    config = json.loads(items[name])
    config["config"]["evil"] = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True,
                                "tensor_meta": None}
    items[name] = json.dumps(config).encode()
    items[f"{name.rsplit('/', 1)[0]}/opaque_obj_0"] = pickle.dumps(Evil(marker))


def _legacy_layout(items: Items, marker: Path) -> None:
    """The pre-archive layout of torch.export.save, its state_dict a payload."""
    program = items[_member(items, "/models/model.json")]
    items.clear()
    items.update({"serialized_exported_program.json": program, "version": b"8.20",
                  "serialized_state_dict.pt": _bytes_of(Evil(marker)),
                  "serialized_constants.pt": _bytes_of({}),
                  "serialized_example_inputs.pt": _bytes_of(((torch.randn(1, 3, 8, 8),), {}))})


TAMPERED: dict[str, Callable[[Items, Path], None]] = {
    "sample-inputs": _pickled_sample_inputs, "weight": _pickled_weight,
    "opaque-constant": _opaque_constant, "legacy-layout": _legacy_layout,
}


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = zoo.PostActivationResNet().eval()
    path = tmp_path_factory.mktemp("pt2") / "model.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(1, 3, 8, 8),)), str(path))
    return path


def tampered(program: Path, tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """A copy of ``program`` with one part made a payload; returns it and the payload's marker."""
    marker = tmp_path / f"payload-ran-{kind}"
    with zipfile.ZipFile(program) as z:
        items = {n: z.read(n) for n in z.namelist()}
    TAMPERED[kind](items, marker)
    path = tmp_path / "in" / f"{kind}.pt2"
    path.parent.mkdir(exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in items.items():
            z.writestr(name, data)
    return path, marker


def hostile_script(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "payload-ran-script"
    path = tmp_path / "in" / "scripted.pt"
    path.parent.mkdir(exist_ok=True)
    torch.jit.save(torch.jit.script(SetstateWrites(str(marker))), str(path))
    assert not marker.exists()
    return path, marker


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "-q"])
    return result.exit_code, result.stdout, result.stderr


def files_in(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def test_a_benign_exported_program_is_analysed(program: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("analyze", str(program), "-o", str(tmp_path / "r"))
    assert code == 0 and err == "", err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert len(report["blocks"]) == BLOCKS and f"{BLOCKS} residual block(s)" in out
    assert report["model"]["parameters"] == sum(p.numel() for p in zoo.PostActivationResNet().parameters())
    assert any("nothing in the file was run or unpickled" in n for n in report["notes"])
    assert files_in(tmp_path) == {tmp_path / "r"} | files_in(tmp_path / "r")


@pytest.mark.parametrize("kind", list(TAMPERED))
def test_a_tampered_exported_program_is_read_without_running_its_payload(
        program: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    path, marker = tampered(program, tmp_path, kind)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    before = files_in(tmp_path)
    code, out, err = cli("analyze", str(path), "-o", str(tmp_path / "r"))
    assert code == 0 and err == "", err
    assert f"{BLOCKS} residual block(s)" in out
    assert not marker.exists()
    assert files_in(tmp_path) - before == {tmp_path / "r"} | files_in(tmp_path / "r")
    with pytest.raises(SourceError, match=r"read as a graph only.*cannot be run"):
        load(str(path)).model(torch.randn(1, 3, 8, 8))
    assert not marker.exists()
    with contextlib.suppress(Exception):  # the control: torch's own loader runs the payload
        torch.export.load(str(path))
    assert marker.exists()


def test_the_exported_reader_never_unpickles_or_deserialises(
        program: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the ExportedProgram reader deserialised something")

    for owner, name in [(torch, "load"), (torch.export, "load"), (torch.jit, "load"), (pickle, "load"),
                        (pickle, "loads"), (torch._C, "_pickle_load_obj")]:
        monkeypatch.setattr(owner, name, refuse)
    path, marker = tampered(program, tmp_path, "opaque-constant")
    loaded = load(str(path))
    assert loaded.graph is not None and len(find_blocks(loaded.graph)) == BLOCKS
    assert loaded.inputs is not None and loaded.inputs.args[0].device.type == "meta"
    assert not marker.exists()


@pytest.mark.parametrize(("content", "message"), [
    ({"root/models/model.json": b"{not json"}, "is a corrupt ExportedProgram"),
    ({"root/models/model.json": b'{"schema_version": {"major": 1}}'}, "has no graph_module"),
    ({"root/models/model.json": b'{"graph_module": {"graph": {}}}'}, "not in a layout resprobe reads"),
    ({"root/models/a.json": b"{}", "root/models/b.json": b"{}"}, "none is called 'model'"),
    ({"serialized_exported_program.pt": b""}, "has no ExportedProgram graph"),
])
def test_unknown_exported_layouts_are_one_line(tmp_path: Path, content: dict[str, bytes],
                                               message: str) -> None:
    path = tmp_path / "odd.pt2"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in content.items():
            z.writestr(name, data)
    code, out, err = cli("analyze", str(path), "-o", str(tmp_path / "r"))
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err
    assert "torch.export.save" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_a_torchscript_archive_needs_trust(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, marker = hostile_script(tmp_path)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    before = files_in(tmp_path)
    for command in (["analyze", str(path), "-o", str(tmp_path / "r")], ["blocks", str(path)],
                    ["graph", str(path), "-o", str(tmp_path / "g.json")]):
        code, out, err = cli(*command)
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert "is a TorchScript archive" in err and "pass --trust" in err and "torch.export.save" in err
    assert not marker.exists() and files_in(tmp_path) == before
    with pytest.raises(SourceError, match="pass --trust"):
        load(str(path))
    assert not marker.exists()
    load(str(path), trust=True)  # trusted: loading runs the archive's __setstate__, as documented
    assert marker.exists()


@pytest.mark.parametrize("arch", ["pt2", "script"])
def test_a_graph_file_as_arch_is_refused_before_loading(program: Path, tmp_path: Path, arch: str) -> None:
    path, marker = (tampered(program, tmp_path, "sample-inputs") if arch == "pt2"
                    else hostile_script(tmp_path))
    state = tmp_path / "weights.pth"
    torch.save(zoo.PostActivationResNet().state_dict(), state)
    for trust in ([], ["--trust"]):
        code, out, err = cli("analyze", str(state), "--arch", str(path), *trust,
                             "-o", str(tmp_path / "r"))
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert "read as a graph only and cannot take a state_dict" in err and "pass a Python source" in err
    assert not marker.exists() and not (tmp_path / "r").exists()


def test_hostile_archives_through_the_console_script(program: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "resprobe"
    script, script_marker = hostile_script(tmp_path)
    pt2, pt2_marker = tampered(program, tmp_path, "weight")
    done = subprocess.run([str(exe), "analyze", str(script), "-o", str(tmp_path / "r"), "-q"],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert "pass --trust" in done.stderr and not (tmp_path / "r").exists()
    done = subprocess.run([str(exe), "analyze", str(pt2), "-o", str(tmp_path / "r"), "-q"],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert f"{BLOCKS} residual block(s)" in done.stdout
    assert not script_marker.exists() and not pt2_marker.exists()


def test_the_exported_graph_matches_a_recorded_one(program: Path) -> None:
    loaded = load(str(program))
    assert loaded.graph is not None
    found = find_blocks(loaded.graph)
    model = zoo.PostActivationResNet().eval()
    eager = find_blocks(resprobe.capture(model, torch.randn(1, 3, 8, 8)))
    assert [(b.name, b.skip_kind, b.step) for b in found] == [(b.name, b.skip_kind, b.step) for b in eager]
