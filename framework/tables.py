"""Tables for people: plain columns with every value whole, as kubectl and nomad print them.

rich would fit a table to the terminal by cutting cells short ("demo_web.…"), which
leaves IDs nobody can copy into the next command. Here a table is always as wide as
its content; a terminal narrower than that wraps the lines, and a pipe or a log gets
them whole.
"""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

UNFITTED = 1_000_000  # a width no table reaches: rich never fits one to the terminal


def console(**options: Any) -> Console:
    """For tables and the lines around them (progress bars want rich's own Console)."""
    return Console(width=UNFITTED, **options)


def table(*columns: str, **options: Any) -> Table:
    plain = {"box": None, "pad_edge": False, "header_style": "bold", "title_justify": "left", "title_style": "bold"}
    made = Table(**{**plain, **options})
    for column in columns:
        made.add_column(column, no_wrap=True)
    return made
