"""Every command module registers into :data:`mythos_rt.core.registry.REGISTRY` on import."""

from mythos_rt.core.commands import info, session
from mythos_rt.core.registry import REGISTRY, CommandContext, dispatch

__all__ = ["REGISTRY", "CommandContext", "dispatch", "info", "session"]
