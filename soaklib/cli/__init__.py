"""``soak`` command line. Each subcommand lives in its own module of this package.

Errors: a SoakError prints one line ``soak: error: ...`` on stderr and exits with its code;
click's own usage errors exit 2. No traceback for user mistakes.
"""
from __future__ import annotations

import importlib
import sys

import click

from soaklib.core.errors import SoakError

# command name -> module in soaklib.cli that defines a click command called `command`
_COMMANDS = {
    "run": "run",
    "report": "report",
    "verify": "verify",
    "gate": "gate",
    "bundle": "bundle",
    "tag": "tag",
    "metrics": "metrics",
    "config": "config",
    "compare": "compare",
}


class _LazyGroup(click.Group):
    """Imports a subcommand's module only when it is used (keeps `soak --help` and startup fast)."""

    def list_commands(self, ctx):
        return sorted(_COMMANDS)

    def get_command(self, ctx, name):
        mod = _COMMANDS.get(name)
        if mod is None:
            return None
        return importlib.import_module(f"soaklib.cli.{mod}").command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="soaklib")
def cli() -> None:
    """Soak-test, auto-tune, audit, gate and release a market-making strategy."""


def main(argv: list[str] | None = None) -> None:
    try:
        rv = cli.main(args=argv, prog_name="soak", standalone_mode=False)
    except SoakError as exc:
        click.echo(f"soak: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("soak: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        # one line, as for every other user mistake (click's default is a three-line block)
        cmd = exc.ctx.command_path if exc.ctx is not None else "soak"
        click.echo(f"soak: error: {exc.format_message()} (see '{cmd} --help')", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"soak: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("soak: interrupted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
