"""``soak tag DIR [--tag V] [--allow-not-ready] [--dry-run] [--force] [--repo PATH]``: annotated git tag
for a release bundle."""
from __future__ import annotations

import shlex

import click

from soaklib.cli.bundle import manifest_well_formed
from soaklib.publish.tag import make_tag


@click.command("tag")
@click.argument("bundle_dir", metavar="DIR", type=click.Path())
@click.option("--tag", "tag", default=None, help="tag name (default and only accepted value: the bundle's version)")
@click.option("--allow-not-ready", is_flag=True,
              help="tag a bundle whose readiness is NOT READY or INCONCLUSIVE (the message's first line says so)")
@click.option("--dry-run", is_flag=True, help="print the tag and its message; write nothing")
@click.option("--force", is_flag=True, help="replace an existing tag of that name")
@click.option("--repo", default=".", type=click.Path(), show_default=True, help="git repository to tag (at HEAD)")
def command(bundle_dir: str, tag: str | None, allow_not_ready: bool, dry_run: bool, force: bool, repo: str) -> None:
    """Verify the bundle DIR, then tag HEAD with an annotated tag carrying its KPI summary. Never prompts."""
    manifest_well_formed(bundle_dir)  # a broken manifest is bad input (exit 2), as for `soak bundle verify`
    res = make_tag(bundle_dir, tag, repo=repo, dry_run=dry_run, force=force, allow_not_ready=allow_not_ready)
    if res.dry_run:
        click.echo(f"[dry-run] would run: {shlex.join(res.command)}  (message on stdin)")
        click.echo(f"[dry-run] {'replacing' if res.replaced else 'creating'} tag {res.tag} at {res.commit}; message:")
        click.echo(res.message)
        return
    click.echo(f"{'replaced' if res.replaced else 'created'} annotated tag {res.tag} at {res.commit}")
    click.echo(f"push it with: git push origin {shlex.quote('refs/tags/' + res.tag)}")
