"""``python -m resprobe``: the command-line interface."""

from .cli import main

main(prog_name="resprobe")
