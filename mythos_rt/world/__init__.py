"""Bundled world data and the loader that reads a world file from disk."""

from __future__ import annotations

from pathlib import Path

from mythos_rt.core.world import World, WorldError, parse_world

__all__ = ["BUNDLED_WORLD", "load_world"]

BUNDLED_WORLD: Path = Path(__file__).with_name("arkham.json")


def load_world(path: Path | None) -> World:
    """Read and validate the world at ``path`` (``None``: the bundled world)."""
    source = BUNDLED_WORLD if path is None else path
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorldError(f"{source}: cannot read the world file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise WorldError(f"{source}: the world file is not UTF-8: {exc.reason}") from exc
    return parse_world(text, str(source))
