"""The plugin registry: entry points, validation, missing dependencies, disabling."""

from __future__ import annotations

import ast
import json
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pytest

from resprobe import Registry, UsageError, load
from resprobe.plugins import GROUPS

ROOT = Path(__file__).resolve().parents[1]

PLUGIN_SOURCE = '''
class Good:
    name = "good"; requires = (); install = ""
    def build(self, name):
        import torch, resprobe
        return resprobe.Loaded(torch.nn.Linear(2, 2), resprobe.Inputs((torch.ones(1, 2),)), "random")
class NoBuild:
    name = "nobuild"; requires = (); install = ""
class WrongName:
    name = "other"; requires = (); install = ""
    def build(self, name): ...
class NeedsMissing:
    name = "needs"; requires = ("no_such_module_for_resprobe",); install = "pip install nothing-real"
    def build(self, name): ...
class ReturnsJunk:
    name = "junk"; requires = (); install = ""
    def build(self, name): return 42
'''


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    (tmp_path / "fakeplugins.py").write_text(PLUGIN_SOURCE)
    (tmp_path / "brokenplugin.py").write_text("import no_such_dependency_xyz\nadapter = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fakeplugins", None)
    group = GROUPS["adapter"]
    eps = [("adapter", EntryPoint(n, v, group)) for n, v in [
        ("good", "fakeplugins:Good"), ("nobuild", "fakeplugins:NoBuild"),
        ("wrongname", "fakeplugins:WrongName"), ("needs", "fakeplugins:NeedsMissing"),
        ("junk", "fakeplugins:ReturnsJunk"), ("broken", "brokenplugin:adapter"),
        ("off", "fakeplugins:Good")]]
    return Registry(disabled=["off"], eps=eps)


def test_each_plugin_is_validated_alone(fake: Registry) -> None:
    status = {p.name: (p.status, p.detail) for p in fake.infos}
    assert status["good"] == ("ok", "")
    assert status["nobuild"][0] == "broken" and "no build() method" in status["nobuild"][1]
    assert status["wrongname"][0] == "broken" and "its name is 'other'" in status["wrongname"][1]
    assert status["needs"] == ("missing dependency",
                               "needs no_such_module_for_resprobe: pip install nothing-real")
    assert status["broken"] == ("missing dependency",
                                "needs no_such_dependency_xyz: pip install no_such_dependency_xyz")
    assert status["off"][0] == "disabled"
    assert list(fake.adapters()) == ["good", "junk"]


def test_unusable_plugins_say_why_and_the_rest_keep_working(fake: Registry) -> None:
    assert load("good:anything", plugins=fake).weights == "random"
    for name, message in [("needs", "missing dependency: needs no_such_module"), ("off", "is disabled"),
                          ("nobuild", "is broken")]:
        with pytest.raises(UsageError, match=message):
            load(f"{name}:x", plugins=fake)
    with pytest.raises(UsageError, match="returned int, not a resprobe.Loaded"):
        load("junk:x", plugins=fake)
    with pytest.raises(UsageError, match="no probe plugin named 'nope'; installed: none"):
        fake.get("probe", "nope")


def test_built_ins_are_registered_as_entry_points() -> None:
    infos = {(p.kind, p.name): p for p in Registry().infos}
    for key in [("adapter", "torchvision"), ("adapter", "timm"), ("adapter", "hf"),
                ("probe", "verify"), ("exporter", "json")]:
        assert infos[key].status == "ok" and infos[key].distribution.startswith("resprobe ")


def test_disable_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPROBE_DISABLE_PLUGINS", "timm, hf")
    reg = Registry()
    assert set(reg.adapters()) == {"torchvision"}
    with pytest.raises(UsageError, match="adapter plugin 'timm' .* is disabled"):
        load("timm:resnet18", plugins=reg)


def test_first_party_plugins_use_only_the_public_api() -> None:
    checked = 0
    for path in (ROOT / "plugins").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("resprobe."), f"{path}: imports {node.module}"
                if node.module == "resprobe":
                    assert not any(a.name.startswith("_") for a in node.names), path
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("resprobe.") for a in node.names), path
        checked += 1
    assert checked >= 3


PROBE_SOURCE = '''
import resprobe
class Tuned:
    name = "tuned"; requires = (); install = ""
    options = (resprobe.Option("--tuned-steps", int, 5, "tuned: steps.", metavar="N", show_default=True),
               resprobe.Option("--exact", bool, False, "tuned: a flag the depth probe has already."))
    def run(self, context):
        steps = context.settings.options.get("tuned_steps", 5)
        return resprobe.ProbeResult("tuned", {"measured": 0, "steps": steps})
class BadOptions:
    name = "badoptions"; requires = (); install = ""; options = ["--steps"]
    def run(self, context): ...
'''


@pytest.fixture
def probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, EntryPoint]]:
    (tmp_path / "fakeprobes.py").write_text(PROBE_SOURCE)
    (tmp_path / "fakezoo.py").write_text("raise RuntimeError('the adapters were loaded')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fakeprobes", None)
    group = GROUPS["probe"]
    return [("probe", EntryPoint("tuned", "fakeprobes:Tuned", group)),
            ("probe", EntryPoint("badoptions", "fakeprobes:BadOptions", group)),
            ("adapter", EntryPoint("zoo", "fakezoo:adapter", GROUPS["adapter"]))]


def test_probe_options_are_validated_and_each_kind_loads_on_first_use(
        probes: list[tuple[str, EntryPoint]]) -> None:
    reg = Registry(eps=probes)
    status = {p.name: (p.status, p.detail) for p in reg.infos_of("probe")}
    assert status["tuned"] == ("ok", "")
    assert status["badoptions"][0] == "broken" and "options must be a tuple of resprobe.Option" in (
        status["badoptions"][1])
    assert "fakezoo" not in sys.modules  # the probes' options are read without the adapters
    assert [p.status for p in reg.infos if p.kind == "adapter"] == ["broken"]


def test_a_plugin_probe_s_options_reach_it_through_the_cli(probes: list[tuple[str, EntryPoint]],
                                                           tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``resprobe analyze`` offers a plugin probe's options after its own and the built-in
    probes'; a flag taken already is left out; the value arrives in ``Settings.options``."""
    from click.testing import CliRunner

    import resprobe.cli as cli

    real = [(kind, ep) for kind, group in GROUPS.items() for ep in entry_points(group=group)]
    monkeypatch.setattr(cli, "Registry", lambda disabled: Registry(disabled, eps=real + probes[:1]))
    shown = CliRunner().invoke(cli.main, ["analyze", "--help"]).stdout
    assert "--tuned-steps N" in shown and "tuned: steps.  [default: 5]" in shown
    assert shown.index("--lesion-module") < shown.index("--tuned-steps") < shown.index("-h, --help")
    assert shown.count("--exact ") == 1 and "tuned: a flag" not in shown
    out = tmp_path / "r"
    done = CliRunner().invoke(cli.main, ["analyze", "-q", "-o", str(out), "--probe", "tuned",
                                         "--tuned-steps", "7"])
    assert done.exit_code == 0, done.stderr
    results = json.loads((out / "report.json").read_text())["results"]
    assert [r["summary"]["steps"] for r in results if r["probe"] == "tuned"] == [7]
