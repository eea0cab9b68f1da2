"""The op-level diagram of a captured graph as Graphviz DOT, residual joins and skips highlighted."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ..blocks import Block
from ..errors import LayoutError, LayoutTimeout, UsageError
from ..graph import Graph

# LayoutError and LayoutTimeout live in resprobe.errors; they stay importable from here
__all__ = ["LayoutError", "LayoutTimeout", "graph_dot", "render", "renderer"]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def graph_dot(graph: Graph, blocks: list[Block], collapse: int | None = None,
              modules: tuple[str, ...] = ()) -> str:
    """Deterministic DOT: one box per node (name, op, shape); joins filled, skip paths dashed.
    ``collapse=D`` draws one box per module at depth D (``layer1.0`` is depth 2) instead of
    the ops inside it; ``modules`` draws one box for each named module (``encoder.layer.3``);
    joins and skip edges between boxes stay visible."""
    if collapse is not None or modules:
        return _collapsed(graph, blocks, collapse, modules)
    joins = {b.join: b for b in blocks}
    skip_edges = {(b.fork, b.join) for b in blocks if not b.skip} | {
        (a, c) for b in blocks for a, c in zip((b.fork,) + b.skip, b.skip + (b.join,))
    }
    lines = [
        f"digraph {_quote(graph.model or 'model')} {{",
        "  rankdir=TB;",
        '  node [shape=box, fontname="Helvetica", fontsize=10];',
    ]
    for n in graph.nodes:
        label = f"{n.name}\\n{n.op.rsplit('.', 1)[-1]}" + (f"\\n{list(n.shape)}" if n.shape else "")
        style = ""
        if n.id in joins:
            b = joins[n.id]
            step = f" · step {b.step}" if b.step else ""
            label = f"{b.name}{step}\\n{b.skip_kind} skip · {b.join_kind}\\n" + label
            style = ', style=filled, fillcolor="#dbeafe"'
        elif n.is_input:
            style = ", shape=ellipse"
        lines.append(f"  n{n.id} [label={_quote(label)}{style}];".replace("\\\\n", "\\n"))
    for src, dst in graph.edges:
        attrs = ' [style=dashed, color="#2563eb", penwidth=2]' if (src, dst) in skip_edges else ""
        lines.append(f"  n{src} -> n{dst}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _group(module: str, depth: int | None, names: tuple[str, ...]) -> str:
    for name in names:
        if module == name or module.startswith(name + "."):
            return name
    if depth is None:
        return module
    return ".".join(module.split(".")[:depth]) if module else ""


def _collapsed(graph: Graph, blocks: list[Block], depth: int | None, names: tuple[str, ...]) -> str:
    joins = {b.join: b for b in blocks}
    skips = {(b.fork, b.join) for b in blocks if not b.skip} | {
        (a, c) for b in blocks for a, c in zip((b.fork,) + b.skip, b.skip + (b.join,))
    }
    key = {n.id: (f"in:{n.name}" if n.is_input else _group(n.module, depth, names) or "<root>")
           for n in graph.nodes}
    groups: dict[str, list[int]] = {}
    for n in graph.nodes:
        groups.setdefault(key[n.id], []).append(n.id)
    ids = {g: f"g{k}" for k, g in enumerate(groups)}
    lines = [
        f"digraph {_quote(graph.model or 'model')} {{",
        "  rankdir=TB;",
        '  node [shape=box, fontname="Helvetica", fontsize=10];',
    ]
    for g, members in groups.items():
        inside = [joins[i] for i in members if i in joins]
        cls = graph.modules.get(g, "")
        label = f"{g}\n{cls + ' · ' if cls else ''}{len(members)} op(s)"
        if inside:
            label += "\n" + ", ".join(
                f"join {b.name}" + (f" (step {b.step})" if b.step else "") for b in inside[:3]
            )
        style = (
            ', style=filled, fillcolor="#dbeafe"'
            if inside
            else (", shape=ellipse" if g.startswith("in:") else "")
        )
        lines.append(f"  {ids[g]} [label={_quote(label)}{style}];")
    edges: dict[tuple[str, str], bool] = {}
    for src, dst in graph.edges:
        a, b = key[src], key[dst]
        if a != b:
            edges[(a, b)] = edges.get((a, b), False) or (src, dst) in skips
    for (a, b), skip in edges.items():
        attrs = ' [style=dashed, color="#2563eb", penwidth=2]' if skip else ""
        lines.append(f"  {ids[a]} -> {ids[b]}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def renderer() -> str | None:
    """The layout program: Graphviz's ``dot`` when installed, else ``graphviz-pure`` (a
    dot-compatible build on PyPI, a dependency of resprobe), else None."""
    exe = shutil.which("dot")
    if exe:
        return exe
    here = Path(sys.executable).parent / "graphviz-pure"
    return shutil.which("graphviz-pure") or (str(here) if here.exists() else None)


def render(dot: str, fmt: str, timeout: float = 60.0) -> bytes:
    """Lay out ``dot`` as ``fmt`` (``svg`` or ``png``) within ``timeout`` seconds with the program
    ``renderer()`` finds, run by the ``graphviz`` package. Every error is one line: a
    ``UsageError`` says what to install (or that ``fmt`` is not a Graphviz format); a
    ``LayoutError`` (exit code 1: not the user's fault) that Graphviz failed or crashed, and its
    ``LayoutTimeout`` that the layout ran too long."""
    from graphviz import CalledProcessError, ExecutableNotFound
    from graphviz.backend import dot_command, execute

    exe = renderer()
    if exe is None:
        raise _not_installed(fmt)
    try:
        flags = dot_command.command("dot", fmt)[1:]  # -Kdot -T<fmt>, checked against Graphviz's formats
    except ValueError:
        raise UsageError(f"Graphviz has no output format {fmt!r}; use svg or png") from None
    # graphviz.pipe() would run whatever `dot` is first on PATH, with no time limit: its command
    # runner is given the program found above (graphviz-pure has no `dot` name) and the timeout
    try:
        done = execute.run_check([exe, *flags], input=dot.encode(), capture_output=True, quiet=True,
                                 timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LayoutTimeout(
            f"Graphviz took over {timeout:.0f} s to lay out the graph; fold it further or "
            "write a .dot file instead"
        ) from None
    except CalledProcessError as err:
        raise LayoutError(f"Graphviz failed: {_why(err.returncode, err.stderr)}") from None
    except ExecutableNotFound:
        raise _not_installed(fmt) from None
    except OSError as err:  # found but cannot be run (permissions, another architecture)
        raise LayoutError(f"Graphviz could not be started ({exe}: {err.strerror or err})") from None
    out: bytes = done.stdout
    return out


def _not_installed(fmt: str) -> UsageError:
    return UsageError(
        f"rendering .{fmt} needs Graphviz's dot program: pip install graphviz-pure, or "
        "apt-get install graphviz; or write a .dot file"
    )


def _why(returncode: int, stderr: bytes | None) -> str:
    """What Graphviz said on stderr, on one line; or how it ended when it said nothing."""
    said = " ".join((stderr or b"").decode(errors="replace").split())[:200]
    if said:
        return said
    return f"killed by signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
