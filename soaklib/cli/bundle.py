"""``soak bundle RUN --out DIR [--version V] [--previous DIR] [--selector M] [--allow-not-ready] [--force]``
and ``soak bundle verify DIR``."""
from __future__ import annotations

from pathlib import Path

import click

from soaklib.core import io as _io
from soaklib.core import schema
from soaklib.core.config import run_config
from soaklib.core.errors import RecordError
from soaklib.publish.bundle import MANIFEST, build_bundle, display_path, verify_bundle
from soaklib.store.loader import open_run


def manifest_well_formed(bundle_dir: str | Path) -> None:
    """RecordError (exit 2, one line naming the file and field) when DIR/MANIFEST.json is missing, not
    JSON (or beyond the reader's limits) or not shaped like a manifest: that is bad input. Only a
    well-formed manifest whose hashes disagree is a failed verification (exit 1, verify_bundle)."""
    p = Path(bundle_dir)
    if not p.is_dir():
        return  # verify_bundle names the missing directory
    f = p / MANIFEST
    schema.check("bundle_manifest", _io.read_json(f), path=f, error=RecordError, what="the bundle manifest schema")


class _BundleGroup(click.Group):
    """``soak bundle RUN ...`` builds; ``soak bundle verify DIR`` checks (a run named ``verify``: use ./verify)."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["build", *args]
        return super().parse_args(ctx, args)


@click.group("bundle", cls=_BundleGroup)
def command() -> None:
    """Release bundle of a reported run, or its integrity check.

    \b
      soak bundle RUN --out DIR [--version V] [--previous DIR] [--selector M] [--allow-not-ready] [--force]
      soak bundle verify DIR
    """


@command.command("build")
@click.argument("run", type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(), help="bundle directory to create")
@click.option("--version", "version", default=None,
              help="release version, e.g. v1.4.0 ([bundle] version_prefix + MAJOR.MINOR.PATCH; default: the --out name)")
@click.option("--previous", type=click.Path(), default=None,
              help="the previous release bundle (default: the newest bundle beside --out; none = first release)")
@click.option("--selector", default=None, metavar="MATCHERS",
              help='label matchers for every alert rule, e.g. job="mm-bot",instance="canary-1" '
                   "(default: [bundle] alert_selector)")
@click.option("--allow-not-ready", is_flag=True,
              help="bundle a run whose readiness is NOT READY or INCONCLUSIVE (the CHANGELOG entry says so)")
@click.option("--force", is_flag=True, help="replace an existing bundle at --out")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML file overriding defaults")
def build(run: str, out: str, version: str | None, previous: str | None, selector: str | None,
          allow_not_ready: bool, force: bool, config_path: str | None) -> None:
    """Assemble the bundle of RUN (needs `soak report` and `soak verify` outputs) in DIR, atomically."""
    r = open_run(run)
    cfg = run_config(r, config_path)
    res = build_bundle(r, out, cfg, version=version, previous=previous, force=force, selector=selector,
                       allow_not_ready=allow_not_ready)
    click.echo(f"soak: {res.said}", err=True)
    for rel, meta in sorted(res.files.items()):
        click.echo(f"  {meta['bytes']:>10}  {rel}")
    for n in res.notes:
        click.echo(f"note: {n}")
    extra = "" if res.readiness.shippable else " -- shipped with --allow-not-ready"
    click.echo(f"bundle {res.version} written to {display_path(res.path)} ({len(res.files)} files + MANIFEST.json), "
               f"gate verdict {res.verdict}, readiness {res.readiness.state}{extra}")


@command.command("verify")
@click.argument("bundle_dir", metavar="DIR", type=click.Path())
def verify(bundle_dir: str) -> None:
    """Check every file of the bundle and MANIFEST.json's own fields; exit 1 naming anything changed
    (exit 2 when MANIFEST.json cannot be read as a manifest at all)."""
    manifest_well_formed(bundle_dir)
    res = verify_bundle(bundle_dir)
    state = (res.release.get("readiness") or {}).get("state")
    click.echo(f"bundle OK: {res.checked} files and the manifest's fields match {bundle_dir}/MANIFEST.json "
               f"(version {res.manifest.get('version')}, gate verdict {res.verdict}, readiness {state})")
