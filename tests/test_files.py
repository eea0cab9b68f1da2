"""Model files: sniffed by content, weights-only first, never unpickled without --trust."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import zoo

import resprobe
from resprobe import SourceError, find_blocks, load

pytestmark = pytest.mark.zoo


class Evil:
    """Unpickling this creates a marker file: the proof that code from the file ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("zipped", [True, False])
def test_a_malicious_pickle_is_never_unpickled_without_trust(tmp_path: Path, zipped: bool) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save({"model": Evil(marker)}, path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(SourceError, match=r"pickled Python object \(builtins\.open|pass --trust"):
        load(str(path))
    with pytest.raises(SourceError):
        load(str(path), arch="torchvision:resnet18")
    assert not marker.exists()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tv = pytest.importorskip("torchvision")
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("files")
    torch.manual_seed(0)
    model = tv.models.resnet18(weights=None).eval()
    paths = {k: d / n for k, n in [("state", "sd.pth"), ("ckpt", "ckpt.bin"), ("full", "full.pt"),
                                   ("safe", "w.safetensors"), ("script", "ts.pt"), ("legacy", "old.pt"),
                                   ("prefixed", "dp.pt")]}
    torch.save(model.state_dict(), paths["state"])
    torch.save({"epoch": 3, "model_state_dict": model.state_dict(), "optimizer": {}}, paths["ckpt"])
    torch.save(model, paths["full"])
    torch.save(model.state_dict(), paths["legacy"], _use_new_zipfile_serialization=False)
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, paths["prefixed"])
    save_file(model.state_dict(), str(paths["safe"]))
    torch.jit.save(torch.jit.trace(model, torch.randn(1, 3, 32, 32)), paths["script"])
    return paths


@pytest.mark.parametrize("kind", ["state", "ckpt", "safe", "legacy", "prefixed"])
def test_weights_files_load_into_arch(saved: dict[str, Path], kind: str) -> None:
    loaded = load(str(saved[kind]), arch="torchvision:resnet18")
    assert loaded.weights == "unknown" and str(saved[kind]) in loaded.description
    reference = torch.load(saved["state"], weights_only=True)
    assert torch.equal(loaded.model.state_dict()["fc.weight"], reference["fc.weight"])
    if kind == "ckpt":
        assert any("epoch, optimizer" in n for n in loaded.notes)


def test_a_state_dict_without_arch_says_what_it_holds(saved: dict[str, Path]) -> None:
    with pytest.raises(SourceError, match=r"state_dict \(122 tensors, 11,699,132 values; top-level "
                                          r"names: conv1, bn1, layer1.*pass --arch"):
        load(str(saved["state"]))


def test_a_state_dict_for_the_wrong_architecture(saved: dict[str, Path]) -> None:
    with pytest.raises(SourceError, match=r"does not fit torchvision:resnet50: \d+ missing parameter"):
        load(str(saved["state"]), arch="torchvision:resnet50")


def test_a_pickled_module_with_trust(saved: dict[str, Path]) -> None:
    with pytest.raises(SourceError, match=r"torchvision\.models\.resnet\.ResNet.*--trust"):
        load(str(saved["full"]))
    loaded = load(str(saved["full"]), trust=True)
    graph = resprobe.capture(loaded.model, torch.randn(1, 3, 32, 32))
    assert len(find_blocks(graph)) == 8


def test_a_torchscript_archive_is_read_without_running_it(saved: dict[str, Path], tmp_path: Path) -> None:
    loaded = load(str(saved["script"]), trust=True)
    assert loaded.graph is not None and loaded.inputs is None
    found = find_blocks(loaded.graph)
    assert [b.name for b in found][:3] == ["layer1.0", "layer1.1", "layer2.0"]
    assert [b.skip_kind for b in found].count("projection") == 3 and len(found) == 8
    assert [len(s.blocks) for s in resprobe.streams(found)] == [8]

    class Branchy(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if bool(x.sum() > 0) else x

    torch.jit.save(torch.jit.script(Branchy()), tmp_path / "branchy.pt")
    with pytest.raises(SourceError, match="has control flow"):
        load(str(tmp_path / "branchy.pt"), trust=True)


def test_an_exported_program_is_read_without_running_it(tmp_path: Path) -> None:
    model = zoo.PostActivationResNet().eval()
    x = torch.randn(1, 3, 8, 8)
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(model, (x,)), str(path))
    loaded = load(str(path))
    assert loaded.graph is not None and loaded.inputs is not None
    found = find_blocks(loaded.graph)
    eager = find_blocks(resprobe.capture(model, x))
    assert [(b.name, b.skip_kind, b.step) for b in found] == [(b.name, b.skip_kind, b.step) for b in eager]
    report = resprobe.analyze(loaded)
    check = report.result("verify")
    assert check is not None and check.notes == ("not run: the graph was read from a file, not recorded",)


def test_bad_files(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(3)}, good)
    cases = {
        "missing.pt": (None, "no such file"),
        "empty.pt": (b"", "is empty"),
        "noise.pt": (bytes(range(256)) * 8, "not a PyTorch model file"),
        "config.pt": (json.dumps({"hidden": 8}).encode(), "is a JSON file"),
        "cut.pt": (good.read_bytes()[:200], "truncated or corrupt"),
    }
    for name, (content, message) in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(SourceError, match=message):
            load(str(tmp_path / name))
    with pytest.raises(SourceError, match="is a directory"):
        load(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SourceError, match="so pass hf:"):
        load(str(tmp_path))
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(SourceError, match="holds a list, not a model or a state_dict"):
        load(str(tmp_path / "list.pt"))
