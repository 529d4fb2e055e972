"""Files and folders that refuse writes, even to root (the tests run as root in CI)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """``path`` cannot be written (nor, for a folder, written into) inside the block.

    chmod does not stop root, so the immutable attribute (``chattr +i``) is used where the file
    system has it; elsewhere (or without chattr) plain permissions, which stop everyone else.
    """
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode == 0:
        try:
            yield
        finally:
            subprocess.run([chattr, "-i", str(path)], check=True, capture_output=True)
        return
    mode = path.stat().st_mode
    path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield
    finally:
        path.chmod(mode)
