"""Annotated release tag for a verified bundle (DESIGN §11).

The message carries the gate verdict (read from the verified GATE.json only), the readiness and
release facts (the verified RELEASE.json), the KPI summary, the applied-delta count and the active
guards; no absolute path. A bundle whose readiness is NOT READY or INCONCLUSIVE is tagged only with
``allow_not_ready``, and then the message's first line says so. git never prompts (no terminal, no
editor: the message goes in on stdin with ``-F -``).
``dry_run`` runs only read-only git commands and writes nothing anywhere.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from soaklib.core import io as _io
from soaklib.core.errors import CheckFailed, InputError, RunnerError
from soaklib.judge.readiness import SHIPPABLE
from soaklib.publish import markdown
from soaklib.publish.bundle import MANIFEST, VerifyResult, display_path, verify_bundle


@dataclass
class TagResult:
    tag: str
    repo: Path
    commit: str
    message: str
    dry_run: bool
    replaced: bool
    command: list[str]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(GIT_TERMINAL_PROMPT="0", GIT_EDITOR="true", EDITOR="true", VISUAL="true", GIT_ASKPASS="",
               SSH_ASKPASS="", GIT_PAGER="cat", LC_ALL="C")
    env.pop("GIT_ASKPASS")
    env.pop("SSH_ASKPASS")
    return env


def _git(repo: Path, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], input=input_text, capture_output=True, text=True,
                              env=_env(), stdin=None if input_text is not None else subprocess.DEVNULL,
                              timeout=60)
    except FileNotFoundError:
        raise InputError("git is not installed (Debian package: git)") from None
    except subprocess.TimeoutExpired:
        raise RunnerError(f"git {' '.join(args)} did not finish within 60 s", path=repo) from None


def check_tag_name(tag: str, repo: Path | None = None) -> str:
    """InputError (exit 2) unless ``git check-ref-format`` accepts refs/tags/<tag>."""
    if not tag or tag.startswith("-"):
        raise InputError(f"tag name {tag!r} is not a valid git tag name", field="--tag")
    r = _git(repo or Path.cwd(), "check-ref-format", f"refs/tags/{tag}")
    if r.returncode != 0:
        raise InputError(f"tag name {tag!r} is rejected by git check-ref-format", field="--tag")
    return tag


def tag_message(tag: str, verified: VerifyResult, bundle_ref: str, manifest_sha: str) -> str:
    """The annotated tag's message, from a verified bundle's GATE.json and RELEASE.json."""
    rel = verified.release
    state = (rel.get("readiness") or {}).get("state")
    return markdown.render("tag_message.txt.j2", tag=tag, rel=rel, gate=verified.gate, bundle=bundle_ref,
                           manifest_sha=manifest_sha, not_ready=state not in SHIPPABLE)


def make_tag(bundle: str | os.PathLike, tag: str | None = None, *, repo: str | os.PathLike = ".",
             dry_run: bool = False, force: bool = False, allow_not_ready: bool = False) -> TagResult:
    """Create the annotated tag ``tag`` (default: the bundle's release tag) at HEAD of ``repo`` for the
    verified bundle.

    InputError (exit 2): bad tag name, a tag other than the bundle's, not a git repo, no commit, tag
    exists without ``force``. CheckFailed (exit 1): the bundle does not verify, or its readiness is
    NOT READY / INCONCLUSIVE without ``allow_not_ready`` (nothing written).
    """
    repo_p = Path(repo)
    if not repo_p.is_dir():
        raise InputError("repository directory not found", path=repo_p)
    top = _git(repo_p, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise InputError("not a git repository", path=repo_p)
    b = Path(bundle)
    res = verify_bundle(b)  # a tampered bundle is never tagged; everything below comes from verified files
    want = res.release.get("tag")
    tag = want if tag is None else tag
    check_tag_name(tag, repo_p)
    if tag != want:
        raise InputError(f"tag {tag!r} is not this bundle's release tag {want!r}", field="--tag")
    state = (res.release.get("readiness") or {}).get("state")
    if state not in SHIPPABLE and not allow_not_ready:
        raise CheckFailed(f"readiness {state}: " + "; ".join((res.release.get("readiness") or {}).get("reasons") or [])
                          + "; no tag written (pass --allow-not-ready to tag it anyway)", path=b)
    head = _git(repo_p, "rev-parse", "--verify", "-q", "HEAD^{commit}")
    if head.returncode != 0:
        raise InputError("the repository has no commit to tag", path=repo_p)
    commit = head.stdout.strip()
    exists = _git(repo_p, "rev-parse", "-q", "--verify", f"refs/tags/{tag}").returncode == 0
    if exists and not force:
        raise InputError(f"tag {tag!r} already exists; pass --force to replace it", path=repo_p, field="--tag")
    msg = tag_message(tag, res, display_path(b), _io.sha256_file(b / MANIFEST))
    cmd = ["git", "-C", str(repo_p), "tag", "-a", "--no-sign", "--cleanup=verbatim"] + (["-f"] if exists else []) \
        + ["-F", "-", tag, commit]
    if dry_run:
        return TagResult(tag=tag, repo=repo_p, commit=commit, message=msg, dry_run=True, replaced=exists, command=cmd)
    r = _git(repo_p, *cmd[3:], input_text=msg)
    if r.returncode != 0:
        err = (r.stderr or r.stdout).strip().splitlines()
        raise InputError(f"git tag failed: {err[-1] if err else 'exit ' + str(r.returncode)}", path=repo_p)
    return TagResult(tag=tag, repo=repo_p, commit=commit, message=msg, dry_run=False, replaced=exists, command=cmd)
