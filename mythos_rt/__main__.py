"""Command line: ``serve`` (the default), ``players add|list|passwd``, ``invites create`` and
``token``.

The only module that reads the environment.  Every setting is a ``serve`` flag (``--grace-s``) and
an environment variable (``MYTHOS_RT_GRACE_S``); a flag wins over the variable, which wins over the
default.  The flags are generated from the fields of :class:`mythos_rt.settings.Settings`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import re
import secrets
import sys
import time
import typing
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from mythos_rt.core.passwords import hash_password, new_salt, password_problem
from mythos_rt.core.world import WorldError
from mythos_rt.core.writes import DeleteBan, SetBan
from mythos_rt.runtime.logs import LogSetupError, configure_logging, log_admin_action
from mythos_rt.runtime.store import Backend, PlayerRecord, StoreError, open_backend
from mythos_rt.runtime.tokens import issue_token
from mythos_rt.settings import (
    JWT_SECRET_ENV,
    SecretFileError,
    Settings,
    env_var,
    load_or_create_secret,
    public_url_problem,
    range_problem,
    setting_fields,
    setting_types,
)
from mythos_rt.settings import flag as _flag
from mythos_rt.world import load_world

PROG = "python -m mythos_rt"
DEFAULT_TOKEN_TTL_S = 3600.0
MAX_INVITES = 1000

log = logging.getLogger("mythos_rt.cli")

Handler = Callable[[argparse.Namespace, Settings, Mapping[str, str]], int]


class CliError(Exception):
    """A refused command: printed on stderr, exit code 2."""


class SettingError(Exception):
    """An environment variable holds a value its setting cannot take."""


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line (naming the flag and pointing at --help), exit code 2: an
    operator's typo deserves a sentence, not a screen of usage."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --- converting text (a flag or an environment variable) into a setting's type ---

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise argparse.ArgumentTypeError(
        f"invalid boolean {text!r} (use true/false, 1/0, yes/no or on/off)"
    )


def _parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None


def _parse_float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None


def _parse_path(text: str) -> Path:
    # Path("") is ".", which would quietly put the data directory in the working directory.
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path")
    return Path(text)


def _parse_optional_path(text: str) -> Path | None:
    return Path(text) if text.strip() else None


def _parse_optional_str(text: str) -> str | None:
    return text.strip() or None


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parse_ttl(text: str) -> float:
    ttl_s = _parse_float(text)
    if ttl_s <= 0:
        raise argparse.ArgumentTypeError(f"the TTL must be positive, not {text!r}")
    return ttl_s


@attrs.frozen
class _Kind:
    parse: Callable[[str], Any]
    metavar: str
    bare_flag_means_true: bool = False


_KINDS: dict[object, _Kind] = {
    int: _Kind(_parse_int, "INT"),
    float: _Kind(_parse_float, "NUMBER"),
    bool: _Kind(_parse_bool, "BOOL", bare_flag_means_true=True),
    str: _Kind(str, "TEXT"),
    Path: _Kind(_parse_path, "PATH"),
    Path | None: _Kind(_parse_optional_path, "PATH"),
    str | None: _Kind(_parse_optional_str, "TEXT"),
    tuple[str, ...]: _Kind(_parse_list, "A,B,..."),
}

_UNSET: Any = object()


def _kind(field: attrs.Attribute[Any]) -> _Kind:
    field_type = setting_types()[field.name]
    if field_type not in _KINDS:
        raise TypeError(f"setting {field.name!r} has type {field_type}, which has no converter")
    return _KINDS[field_type]


# --- settings from flags and environment ---


def settings_from(
    args: argparse.Namespace, environ: Mapping[str, str], *, only: Collection[str] | None = None
) -> Settings:
    """Build :class:`Settings` from flags, then ``MYTHOS_RT_*`` variables, then defaults.

    ``only`` restricts which settings are read (the others keep their defaults).  A variable
    whose value does not convert raises :class:`SettingError` naming the variable.
    """
    values: dict[str, Any] = {}
    for field in setting_fields():
        if only is not None and field.name not in only:
            continue
        value = getattr(args, field.name, _UNSET)
        if value is _UNSET:
            value = _from_env(field, environ)
        if value is not _UNSET:
            values[field.name] = value
    return Settings(**values)


def _from_env(field: attrs.Attribute[Any], environ: Mapping[str, str]) -> Any:
    name = env_var(field.name)
    if name not in environ:
        return _UNSET
    try:
        return _kind(field).parse(environ[name])
    except argparse.ArgumentTypeError as exc:
        raise SettingError(f"environment variable {name}: {exc}") from None


# --- the parser ---


def _add_setting_flags(
    parser: argparse.ArgumentParser, only: Collection[str] | None = None
) -> None:
    fields = [f for f in setting_fields() if only is None or f.name in only]
    for group in dict.fromkeys(f.metadata["group"] for f in fields):
        section = parser.add_argument_group(f"{group} settings")
        for field in fields:
            if field.metadata["group"] == group:
                section.add_argument(_flag(field.name), **_flag_options(field))


def _flag_options(field: attrs.Attribute[Any]) -> dict[str, Any]:
    kind = _kind(field)
    options: dict[str, Any] = {
        "dest": field.name,
        "type": kind.parse,
        "metavar": kind.metavar,
        # SUPPRESS leaves an absent flag out of the namespace, so settings_from can tell
        # "not given" from an explicit empty value.
        "default": argparse.SUPPRESS,
        "help": _flag_help(field),
    }
    if kind.bare_flag_means_true:
        options.update(nargs="?", const=True)
    return options


def _flag_help(field: attrs.Attribute[Any]) -> str:
    text: str = field.metadata["help"]
    # A help text that already explains its default ("default: the bundled world") says it better.
    shown = None if "default:" in text else _show_default(field.default)
    default = "" if shown is None else f"; default: {shown}"
    # argparse %-formats help strings.
    return f"{text} [env {env_var(field.name)}{default}]".replace("%", "%%")


def _show_default(default: Any) -> str | None:
    if callable(getattr(default, "factory", None)):
        return None  # attrs.Factory: computed at startup, the field's help describes it
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, tuple):
        return ",".join(default) or "empty"
    return str(default)


_DESCRIPTION = """\
Real-time Trio server for MythosMUD-style text games, and the tools to run it.
Without a command, runs `serve`."""

_EPILOG = f"""\
examples:
  {PROG}                                  serve with the embedded defaults
  {PROG} serve --port 9000 --grace-s 10
  {PROG} players add Carter Pickman --admin
  {PROG} players list
  {PROG} players passwd Armitage < password.txt
  {PROG} invites create 5
  {PROG} token Armitage --ttl 600

Every serve setting is also an environment variable MYTHOS_RT_<NAME> (see `serve --help`);
{JWT_SECRET_ENV} holds the JWT secret (default: a file in the data directory)."""

_SERVE_EPILOG = f"""\
Precedence: flag, then environment variable, then default.  Booleans take true/false, 1/0,
yes/no or on/off (a bare flag means true); lists are comma-separated; an empty value unsets an
optional setting.  {JWT_SECRET_ENV} holds the JWT secret; when it is unset, the secret is read from
(or created in) the data directory.

examples:
  {PROG} serve
  {PROG} serve --host 0.0.0.0 --allowed-origins https://a.example,https://b.example
  MYTHOS_RT_NATS_URL=nats://127.0.0.1:4222 MYTHOS_RT_PORT=0 {PROG}"""

_PLAYERS_ADD_EPILOG = f"""\
Prints one JSON object per player, one per line: player_id, user_id, name, room_id.
All players are created in one transaction: if one name is refused, none is created.
With --password, every player gets that password (for the HTTP login; at least 8 characters).

examples:
  {PROG} players add Carter Pickman Upton
  {PROG} players add Carter --password 'a long passphrase'
  {PROG} players add Dyer --admin --room earth_arkhamcity_campus_library_hall
  {PROG} players add Curwen --user-id 0b6f2c1e-8c5e-4f8e-9a53-3d1b8d2f3c4a"""

_PASSWD_EPILOG = f"""\
Reads the new password as one line from standard input (so it stays out of shell history and
process lists) and stores only its salted scrypt hash.  At least 8 characters.

examples:
  {PROG} players passwd Armitage < password.txt
  printf '%s\\n' "$NEW_PASSWORD" | {PROG} players passwd Armitage"""

_INVITES_EPILOG = f"""\
Prints N new single-use invite codes (default 1), one per line.  With registration open
(--registration-open on serve), each code lets one person create a player through
POST /v1/auth/register.

examples:
  {PROG} invites create
  {PROG} invites create 20"""

_TOKEN_EPILOG = f"""\
Prints one JWT per name, one per line, for that player's user.  The secret comes from
{JWT_SECRET_ENV}, else from the data directory (created there if missing).

examples:
  {PROG} token Armitage
  {PROG} token Armitage Wilmarth --ttl 600"""


def _command(
    subparsers: Any,
    name: str,
    help: str,
    epilog: str,
    handler: Handler,
    reads: Collection[str] | None,
    usage: str | None = None,
) -> argparse.ArgumentParser:
    # reads: the settings the command uses (None: all of them); the others keep their defaults.
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=epilog,
        usage=usage,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # command_parser: errors found after parsing (bad environment values) show this usage.
    parser.set_defaults(handler=handler, reads=reads, command_parser=parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The whole CLI: ``serve`` (every setting a flag), ``players add|list``, ``token``."""
    parser = _Parser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # The generated usage line would list all fifty-odd flags; the groups below do that better.
    usage = "%(prog)s [-h] [--SETTING VALUE ...]"
    serve = _command(commands, "serve", "run the server", _SERVE_EPILOG, _serve, None, usage)
    _add_setting_flags(serve)
    _add_players_parser(commands)
    _add_invites_parser(commands)
    _add_token_parser(commands)
    return parser


def _add_players_parser(commands: Any) -> None:
    players = commands.add_parser(
        "players",
        help="create, list, rename, ban and delete players",
        description="Create and list players in the store (SQLite in the data directory, or"
        " the PostgreSQL database of DATABASE_URL).",
        epilog=f"examples:\n  {PROG} players add Carter Pickman\n  {PROG} players list"
        f"\n  {PROG} players ban Upton --until 7d",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = players.add_subparsers(dest="action", metavar="ACTION", required=True)
    add_reads = ("data_dir", "database_url", "world")
    add = _command(actions, "add", "create players", _PLAYERS_ADD_EPILOG, _players_add, add_reads)
    add.add_argument("names", nargs="+", metavar="NAME", help="player names (1-32 characters)")
    add.add_argument("--admin", action="store_true", help="make the players admins")
    add.add_argument("--room", metavar="ROOM_ID", help="starting room (default: the start room)")
    add.add_argument("--user-id", metavar="UUID", help="an existing user to own the players")
    add.add_argument("--password", metavar="PASSWORD", help="a password for every new player")
    _add_setting_flags(add, add_reads)
    listing_epilog = (
        f"Prints one JSON object per player, one per line.\n\nexample:\n  {PROG} players list"
    )
    list_reads = ("data_dir", "database_url")
    listing = _command(
        actions, "list", "list the players", listing_epilog, _players_list, list_reads
    )
    _add_setting_flags(listing, list_reads)
    passwd = _command(
        actions, "passwd", "set a player's password", _PASSWD_EPILOG, _players_passwd, list_reads
    )
    passwd.add_argument("name", metavar="NAME", help="the player")
    _add_setting_flags(passwd, list_reads)
    _add_moderation_parsers(actions, list_reads)


_MODERATION_EPILOG = f"""\
Each prints one JSON line for the player: player_id, user_id, name, room_id and what changed.
An unknown name is one line on stderr and exit code 2.

A running server reads these from the store when a player logs in or connects: a ban or a
deletion refuses the next login and handshake at once, a rename or an admin change applies from
the player's next login.  Sockets already open stay open: to end a session now, use the in-game
admin commands `kick` or `ban` (docs/OPERATIONS.md).

examples:
  {PROG} players delete Carter
  {PROG} players rename Carter Randolph
  {PROG} players admin Dyer
  {PROG} players admin Dyer --off
  {PROG} players ban Upton --reason 'spam' --until 7d
  {PROG} players ban Upton --until 2026-12-24T18:00:00Z
  {PROG} players unban Upton"""


def _add_moderation_parsers(actions: Any, reads: Collection[str]) -> None:
    def command(name: str, help: str, handler: Handler) -> argparse.ArgumentParser:
        parser = _command(actions, name, help, _MODERATION_EPILOG, handler, reads)
        parser.add_argument("name", metavar="NAME", help="the player")
        return parser

    command("delete", "delete a player (password and mutes too)", _players_delete)
    rename = command("rename", "give a player a new name", _players_rename)
    rename.add_argument("new_name", metavar="NEW_NAME", help="1-32 characters, unique")
    admin = command("admin", "make a player an admin (or not, with --off)", _players_admin)
    admin.add_argument("--off", action="store_true", help="take the admin rights away")
    ban = command("ban", "refuse a player at every login", _players_ban)
    ban.add_argument("--reason", metavar="TEXT", help="why (kept for operators)")
    ban.add_argument(
        "--until",
        type=_parse_until,
        metavar="WHEN",
        help="end of the ban: a duration (30m, 12h, 7d) or a UTC date/time"
        " (2026-12-24 or 2026-12-24T18:00:00Z); default: for good",
    )
    command("unban", "lift a player's ban", _players_unban)
    for name in ("delete", "rename", "admin", "ban", "unban"):
        _add_setting_flags(actions.choices[name], reads)


_DURATION = re.compile(r"([1-9][0-9]{0,6})([mhd])")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}


def _parse_until(text: str) -> float:
    """A duration from now (``30m``, ``12h``, ``7d``) or an ISO date/time (UTC unless it says
    otherwise), as epoch seconds in the future."""
    now = time.time()
    duration = _DURATION.fullmatch(text.strip())
    if duration is not None:
        return now + int(duration[1]) * _UNIT_S[duration[2]]
    try:
        when = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r} (use 30m, 12h, 7d, 2026-12-24 or 2026-12-24T18:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    until = when.timestamp()
    if until <= now:
        raise argparse.ArgumentTypeError(f"{text!r} is in the past")
    return until


def _add_invites_parser(commands: Any) -> None:
    invites = commands.add_parser(
        "invites",
        help="create invite codes for registration",
        description="Create single-use invite codes for POST /v1/auth/register.",
        epilog=_INVITES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = invites.add_subparsers(dest="action", metavar="ACTION", required=True)
    reads = ("data_dir", "database_url")
    create = _command(
        actions, "create", "print new invite codes", _INVITES_EPILOG, _invites_create, reads
    )
    create.add_argument(
        "count", nargs="?", type=_parse_count, default=1, metavar="N", help="how many (default 1)"
    )
    _add_setting_flags(create, reads)


def _parse_count(text: str) -> int:
    count = _parse_int(text)
    if not 1 <= count <= MAX_INVITES:
        raise argparse.ArgumentTypeError(f"N must be between 1 and {MAX_INVITES}, not {text!r}")
    return count


def _add_token_parser(commands: Any) -> None:
    reads = ("data_dir", "database_url", "jwt_audience")
    token = _command(commands, "token", "print a JWT per player", _TOKEN_EPILOG, _token, reads)
    token.add_argument("names", nargs="+", metavar="NAME", help="player names")
    token.add_argument(
        "--ttl",
        type=_parse_ttl,
        default=DEFAULT_TOKEN_TTL_S,
        metavar="SECONDS",
        help=f"token lifetime (default: {DEFAULT_TOKEN_TTL_S:g})",
    )
    _add_setting_flags(token, reads)


def _with_default_command(argv: Sequence[str]) -> list[str]:
    # No command means serve, flags included: `mythos_rt --port 9000` is `serve --port 9000`.
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        return ["serve", *argv]
    return list(argv)


# --- commands ---


def _serve(args: argparse.Namespace, settings: Settings, environ: Mapping[str, str]) -> int:
    try:
        configure_logging(settings.log_level, settings.log_format)
    except LogSetupError as exc:
        raise CliError(str(exc)) from None
    problem = settings.public_url and public_url_problem(settings.public_url)
    if problem:
        raise CliError(problem)
    secret, created = load_or_create_secret(settings.data_dir, environ.get(JWT_SECRET_ENV))
    # Imported here: the other commands need none of the server's machinery.
    from mythos_rt.runtime.server import run_server

    return run_server(settings, secret=secret, secret_created=created)


def _players_add(args: argparse.Namespace, settings: Settings, environ: Mapping[str, str]) -> int:
    world = load_world(settings.world)
    room_id: str = world.start_room_id if args.room is None else args.room
    if world.room(room_id) is None:
        raise CliError(f"Room '{room_id}' not found in the world '{world.name}'")
    # One hash for the batch: a thousand scrypt runs would take a minute, and the players
    # share the password anyway.
    password_hash = None if args.password is None else _new_password_hash(args.password)
    with _open_store(settings) as store:
        records = store.add_players(
            args.names,
            room_id=room_id,
            is_admin=args.admin,
            user_id=args.user_id,
            password_hash=password_hash,
        )
    _print_lines(record.to_json_line() for record in records)
    return 0


def _players_list(args: argparse.Namespace, settings: Settings, environ: Mapping[str, str]) -> int:
    with _open_store(settings) as store:
        records = store.list_players()
    _print_lines(record.to_json_line() for record in records)
    return 0


def _players_passwd(
    args: argparse.Namespace, settings: Settings, environ: Mapping[str, str]
) -> int:
    with _open_store(settings) as store:
        record = _player_named(store, args.name)
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        store.set_password(record.player_id, _new_password_hash(password))
    print(f"password set for {record.name}", file=sys.stderr)
    return 0


def _players_delete(
    args: argparse.Namespace, settings: Settings, environ: Mapping[str, str]
) -> int:
    def delete(store: Backend, record: PlayerRecord) -> PlayerRecord:
        store.delete_player(record.player_id)
        return record

    record, _ = _change_player(settings, args.name, delete)
    _report("players delete", record, {"deleted": True})
    return 0


def _players_rename(
    args: argparse.Namespace, settings: Settings, environ: Mapping[str, str]
) -> int:
    def rename(store: Backend, record: PlayerRecord) -> PlayerRecord:
        return store.rename_player(record.player_id, args.new_name)

    record, renamed = _change_player(settings, args.name, rename)
    _report("players rename", renamed, {"old_name": record.name}, f"was {record.name}")
    return 0


def _players_admin(args: argparse.Namespace, settings: Settings, environ: Mapping[str, str]) -> int:
    def set_admin(store: Backend, record: PlayerRecord) -> PlayerRecord:
        return store.set_admin(record.player_id, not args.off)

    _, changed = _change_player(settings, args.name, set_admin)
    _report("players admin", changed, {"is_admin": changed.is_admin})
    return 0


def _players_ban(args: argparse.Namespace, settings: Settings, environ: Mapping[str, str]) -> int:
    reason: str | None = args.reason.strip() if args.reason and args.reason.strip() else None
    until: float | None = args.until

    def ban(store: Backend, record: PlayerRecord) -> PlayerRecord:
        store.apply([SetBan(record.player_id, until, reason)])
        return record

    record, _ = _change_player(settings, args.name, ban)
    shown_until = None if until is None else _iso(until)
    fields = {"banned": True, "banned_until": shown_until, "ban_reason": reason}
    _report("players ban", record, fields, f"until {shown_until or 'for good'}", f"{reason=}")
    return 0


def _players_unban(args: argparse.Namespace, settings: Settings, environ: Mapping[str, str]) -> int:
    def unban(store: Backend, record: PlayerRecord) -> PlayerRecord:
        store.apply([DeleteBan(record.player_id)])
        return record

    record, _ = _change_player(settings, args.name, unban)
    _report("players unban", record, {"banned": False})
    return 0


def _change_player(
    settings: Settings, name: str, change: Callable[[Backend, PlayerRecord], PlayerRecord]
) -> tuple[PlayerRecord, PlayerRecord]:
    """The player named ``name`` (an unknown name is a CliError), before and after ``change``."""
    with _open_store(settings) as store:
        record = _player_named(store, name)
        return record, change(store, record)


def _report(action: str, record: PlayerRecord, fields: Mapping[str, object], *details: str) -> None:
    """The command's answer (one JSON line on stdout) and the operator's record of it."""
    _admin_action(action, record.name, *details)
    _print_lines([record.to_json_line(**fields)])


def _iso(epoch_s: float) -> str:
    when = datetime.datetime.fromtimestamp(epoch_s, datetime.UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _admin_action(action: str, name: str, *details: str) -> None:
    """One line on stderr for the operator's terminal (stdout carries the JSON answer), and the
    same at INFO for a caller that collects logs."""
    line = f"admin action: {action} {name}" + "".join(f"; {detail}" for detail in details)
    print(line, file=sys.stderr)
    log_admin_action("cli", action, name, "; ".join(details))


def _new_password_hash(password: str) -> str:
    problem = password_problem(password)
    if problem is not None:
        raise CliError(problem)
    return hash_password(password, new_salt())


def _invites_create(
    args: argparse.Namespace, settings: Settings, environ: Mapping[str, str]
) -> int:
    codes = [secrets.token_urlsafe(16) for _ in range(args.count)]
    with _open_store(settings) as store:
        store.create_invites(codes)
    _print_lines(codes)
    return 0


def _token(args: argparse.Namespace, settings: Settings, environ: Mapping[str, str]) -> int:
    # Resolve every name first: an unknown one prints nothing and creates no secret file.
    with _open_store(settings) as store:
        players = [_player_named(store, name) for name in args.names]
    secret, created = load_or_create_secret(settings.data_dir, environ.get(JWT_SECRET_ENV))
    if created:
        print(f"Created a new JWT secret in {settings.secret_path}", file=sys.stderr)
    now = time.time()
    _print_lines(
        issue_token(secret, p.user_id, ttl_s=args.ttl, audience=settings.jwt_audience, now=now)
        for p in players
    )
    return 0


def _player_named(store: Backend, name: str) -> PlayerRecord:
    record = store.find_player_by_name(name)
    if record is None:
        raise CliError(f"Player '{name}' not found")
    return record


def _open_store(settings: Settings) -> contextlib.closing[Backend]:
    return contextlib.closing(open_backend(settings))


def _print_lines(lines: Iterable[str]) -> None:
    sys.stdout.write("".join(f"{line}\n" for line in lines))


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the CLI and return its exit code.

    ``environ`` defaults to ``os.environ``.  argparse's own exits (``--help``, usage errors and
    unconvertible settings) raise ``SystemExit`` as usual.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    parser = build_parser()
    args = parser.parse_args(_with_default_command(sys.argv[1:] if argv is None else argv))
    try:
        settings = settings_from(args, env, only=args.reads)
    except SettingError as exc:
        command_parser: argparse.ArgumentParser = args.command_parser
        command_parser.error(str(exc))
    problem = range_problem(settings, only=args.reads)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    handler: Handler = args.handler
    try:
        return handler(args, settings, env)
    except (CliError, SecretFileError, StoreError, WorldError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run() -> int:
    """``main`` for ``python -m mythos_rt``: a reader that leaves early (``players list | head
    -1``) has what it wanted, so a broken pipe ends the command quietly, with exit code 0."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit; pointing it at /dev/null keeps that quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    sys.exit(run())
