"""scripts/serve installs only when needed: a complete .venv (stamped with the hash of
pyproject.toml) starts without pip or the network; anything else announces the install first."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 60


def checkout(tmp_path: Path) -> Path:
    """A copy of the script and pyproject.toml, with a .venv whose python is this one."""
    tree = tmp_path / "checkout"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "serve", tree / "scripts" / "serve")
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    python = tree / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return tree


def stamp(tree: Path, text: str | None = None) -> None:
    digest = hashlib.sha256((tree / "pyproject.toml").read_bytes()).hexdigest()
    (tree / ".venv" / ".mythos_rt-installed").write_text((text or digest) + "\n")


def serve(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # No python3 or pip on the PATH: only the stamped .venv can answer.
    fake_bin = tree / "fake-bin"
    fake_bin.mkdir(exist_ok=True)
    python3 = fake_bin / "python3"
    python3.write_text('#!/bin/sh\necho "python3 was called: $*" >&2\nexit 3\n')
    python3.chmod(0o755)
    return subprocess.run(
        [str(tree / "scripts" / "serve"), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={"PATH": f"{fake_bin}:/usr/bin:/bin", "HOME": str(tree)},
        check=False,
    )


def test_a_complete_venv_starts_without_installing(tmp_path: Path) -> None:
    tree = checkout(tmp_path)
    stamp(tree)
    done = serve(tree, "players", "list", "--data-dir", str(tmp_path / "data"))
    assert (done.returncode, done.stderr) == (0, "")


def test_a_changed_pyproject_announces_an_install_first(tmp_path: Path) -> None:
    tree = checkout(tmp_path)
    stamp(tree, "an older pyproject.toml")
    done = serve(tree, "players", "list")
    assert done.returncode == 3  # the install began: the stand-in python3 refused it
    lines = done.stderr.splitlines()
    assert lines[0].startswith("serve: installing mythos_rt into ")
    assert "python3 was called: -m venv .venv" in lines
    assert not (tree / ".venv" / ".mythos_rt-installed").exists()
