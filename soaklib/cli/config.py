"""``soak config show | validate FILE``."""
from __future__ import annotations

import click

from soaklib.core import io as _io
from soaklib.core.config import load_config


@click.group("config")
def command() -> None:
    """Show or validate the effective configuration."""


@command.command("show")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML file overriding defaults")
def show(config_path: str | None) -> None:
    """Print the effective configuration as JSON."""
    click.echo(_io.dumps(load_config(config_path)))


@command.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
def validate(file: str) -> None:
    """Validate a config TOML file (exit 2 with the field named if it is wrong)."""
    load_config(file)
    click.echo(f"{file}: ok")
