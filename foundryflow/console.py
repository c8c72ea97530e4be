"""The command line's consoles and its usage error, shared by every command group."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console()
err = Console(stderr=True)


def usage_error(message: str) -> typer.Exit:
    """Exit 2: the command line or the data it names must change; retrying will not help."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(2)
