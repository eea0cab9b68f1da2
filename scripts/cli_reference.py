"""Write docs/cli-reference.md from the click commands' own help (run after changing the CLI
or a probe's options, which `resprobe analyze` lists from every installed probe; a test checks
the file is current).

Run:  python scripts/cli_reference.py
"""

from __future__ import annotations

from pathlib import Path

import click

from resprobe.cli import main as cli

OUT = Path(__file__).resolve().parents[1] / "docs" / "cli-reference.md"


def reference() -> str:
    parts = ["# CLI reference", "",
             "Generated from the commands' `--help` by `python scripts/cli_reference.py`; see "
             "[cli.md](cli.md) for the guide.", ""]
    root = click.Context(cli, info_name="resprobe", terminal_width=100, max_content_width=100,
                         help_option_names=["-h", "--help"])
    parts += ["## resprobe", "", "```", cli.get_help(root), "```", ""]
    for name in sorted(cli.list_commands(root)):
        command = cli.get_command(root, name)
        assert command is not None
        ctx = click.Context(command, info_name=name, parent=root, terminal_width=100, max_content_width=100)
        parts += [f"## resprobe {name}", "", "```", command.get_help(ctx), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    OUT.write_text(reference(), encoding="utf-8")
    print(f"wrote {OUT}")
