"""Every command module registers into :data:`mythos_rt.core.registry.REGISTRY` on import."""

from mythos_rt.core.commands import admin, channels, info, movement, session, social
from mythos_rt.core.registry import REGISTRY, CommandContext, dispatch

__all__ = [
    "REGISTRY",
    "CommandContext",
    "admin",
    "channels",
    "dispatch",
    "info",
    "movement",
    "session",
    "social",
]
