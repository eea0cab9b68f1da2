"""The public API is what resprobe/__init__.py re-exports, and nothing is defined there."""

from __future__ import annotations

import ast
from pathlib import Path

import resprobe

ROOT = Path(__file__).resolve().parents[1]


def test_init_only_imports_and_all_is_sorted() -> None:
    tree = ast.parse((ROOT / "resprobe" / "__init__.py").read_text())
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    assigns = [n for n in body if not isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [a.targets[0].id for a in assigns if isinstance(a, ast.Assign)] == ["__all__"]
    assert len(assigns) == 1
    assert resprobe.__all__ == sorted(resprobe.__all__)
    assert all(hasattr(resprobe, name) for name in resprobe.__all__)


def test_library_code_never_prints() -> None:
    for path in (ROOT / "resprobe").glob("*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        calls = [n for n in ast.walk(ast.parse(path.read_text()))
                 if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
        assert not calls, f"{path.name} prints"


def test_detection_is_torch_free() -> None:
    for name in ("graph.py", "blocks.py", "_dataflow.py", "_naming.py", "_opclass.py"):
        tree = ast.parse((ROOT / "resprobe" / name).read_text())
        mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(m == "torch" or m.startswith("torch.") for m in mods), name
