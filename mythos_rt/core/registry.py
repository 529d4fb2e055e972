"""The command table: a command is one small function registered under its name and aliases.

PROTOCOL.md section 9: the command is lower-cased, a leading ``/`` is ignored, ``args`` are kept
verbatim.  Handlers are pure: they read the context, may change the presences, and return
effects.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping

import attrs

from mythos_rt.core.chat import ChatLimiter
from mythos_rt.core.effects import Effect, reply
from mythos_rt.core.presence import Presence, Presences
from mythos_rt.core.social import KnownPlayer, Social
from mythos_rt.core.world import World


@attrs.frozen
class CommandContext:
    world: World
    presences: Presences
    actor: Presence
    socket_id: int
    now: float  # trio (monotonic) time, for wards and expiries
    wall_now: float  # epoch seconds, for what players read
    chat: ChatLimiter
    new_id: Callable[[], str]  # message ids; injected so rules stay deterministic under test
    social: Social = attrs.field(factory=Social)
    directory: Mapping[str, KnownPlayer] = attrs.field(factory=dict)  # casefolded name -> player
    request_ttl_s: float = 60.0
    # True when the store was already asked for the names this command uses (see FindPlayer).
    store_consulted: bool = False
    rest_s: int = 10


Handler = Callable[[CommandContext, tuple[str, ...]], list[Effect]]


@attrs.frozen
class CommandSpec:
    name: str
    handler: Handler
    usage: str
    summary: str
    aliases: tuple[str, ...] = ()
    admin: bool = False
    listed: bool = True  # shown in the ``help`` overview


class Registry:
    def __init__(self) -> None:
        self._specs: dict[str, CommandSpec] = {}
        self._lookup: dict[str, CommandSpec] = {}

    def command(
        self,
        name: str,
        *aliases: str,
        usage: str,
        summary: str,
        admin: bool = False,
        listed: bool = True,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            spec = CommandSpec(name, handler, usage, summary, aliases, admin, listed)
            self._specs[name] = spec
            for key in (name, *aliases):
                self._lookup[key] = spec
            return handler

        return register

    def find(self, name: str) -> CommandSpec | None:
        return self._lookup.get(name)

    def __iter__(self) -> Iterator[CommandSpec]:
        return iter(sorted(self._specs.values(), key=lambda spec: spec.name))


REGISTRY = Registry()

# Control characters other than tab and newline make a line "Invalid command format".
_ALLOWED_CONTROLS = {"\t", "\n"}


def _has_bad_controls(text: str) -> bool:
    # Category Cc covers C0, DEL and C1 (U+0080..U+009F, e.g. the 8-bit terminal CSI).
    return any(unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROLS for ch in text)


def whole_number(text: str, low: int, high: int) -> int | None:
    """An ASCII decimal in [low, high], or None.  (str.isdigit() accepts "²", int() does not.)"""
    if not re.fullmatch(r"[0-9]{1,12}", text):
        return None
    value = int(text)
    return value if low <= value <= high else None


def normalize(
    command: str, args: tuple[str, ...], max_chars: int
) -> tuple[str, tuple[str, ...]] | str:
    """Return ``(name, args)`` or the error text to reply with.

    A client that sends a whole line as ``command`` ("say hello") is split on the first space,
    so both shapes behave the same.
    """
    line = " ".join((command, *args))
    if len(line) > max_chars:
        return f"Command too long (max {max_chars} characters)"
    if _has_bad_controls(line):
        return "Invalid command format"
    head, _, rest = command.strip().partition(" ")
    name = head.lstrip("/").lower()
    extra = tuple(rest.split()) if rest.strip() else ()
    return name, extra + args


def dispatch(
    ctx: CommandContext, command: str, args: tuple[str, ...], max_chars: int
) -> list[Effect]:
    normalized = normalize(command, args, max_chars)
    if isinstance(normalized, str):
        return [reply(ctx.actor.player_id, normalized)]
    name, args = normalized
    if not name:
        return [reply(ctx.actor.player_id, "")]
    spec = REGISTRY.find(name)
    if spec is None or (spec.admin and not ctx.actor.is_admin):
        return [reply(ctx.actor.player_id, unknown_command_text(name))]
    return spec.handler(ctx, args)


def unknown_command_text(name: str) -> str:
    return f"Unknown command: {name}. Use 'help' for available commands."
