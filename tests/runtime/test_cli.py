from __future__ import annotations

import base64
import io
import json
import logging
import os
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mythos_rt.__main__ import build_parser, env_var, main, settings_from
from mythos_rt.core.passwords import verify_password
from mythos_rt.runtime.store import PlayerRecord, open_backend
from mythos_rt.runtime.store.sqlite import SqliteBackend
from mythos_rt.runtime.tokens import verify_token
from mythos_rt.settings import RANGES, Settings, range_of, setting_fields, setting_types
from mythos_rt.world import load_world

SECRET = "test-secret-" + "x" * 40  # PyJWT warns about HMAC keys under 32 bytes
START = load_world(None).start_room_id
OTHER_ROOM = "earth_innsmouth_waterfront_wharf"
REPO = Path(__file__).resolve().parents[2]

RunCli = Callable[..., tuple[int, list[str], str]]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def run(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> RunCli:
    """Run the CLI in-process with the data dir in the environment; return (code, lines, stderr)."""

    def run_cli(*argv: str, **env: str) -> tuple[int, list[str], str]:
        environ = {"MYTHOS_RT_DATA_DIR": str(data_dir), **env}
        code = main(list(argv), environ=environ)
        out, err = capsys.readouterr()
        return code, out.splitlines(), err

    return run_cli


def records(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


# --- players ---


def test_players_add_prints_one_json_line_per_player(run: RunCli) -> None:
    code, lines, err = run("players", "add", "Carter", "Pickman", "Upton")
    assert (code, err) == (0, "")
    added = records(lines)
    assert [r["name"] for r in added] == ["Carter", "Pickman", "Upton"]
    assert all(list(r) == ["player_id", "user_id", "name", "room_id"] for r in added)
    assert {r["room_id"] for r in added} == {START}
    assert len({r["user_id"] for r in added}) == 3


def test_players_list_prints_every_player(run: RunCli) -> None:
    _, added, _ = run("players", "add", "Carter", "Pickman")
    _, more, _ = run("players", "add", "Upton")
    code, listed, _ = run("players", "list")
    assert code == 0
    assert listed == added + more


def test_players_list_of_an_empty_store_prints_nothing(run: RunCli) -> None:
    assert run("players", "list") == (0, [], "")


def test_data_dir_flag_wins_over_the_environment(run: RunCli, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    run("players", "add", "Carter", "--data-dir", str(elsewhere))
    assert run("players", "list") == (0, [], "")
    assert (elsewhere / "mythos_rt.sqlite3").is_file()


def test_players_add_admin_room_and_user_id(run: RunCli) -> None:
    _, lines, _ = run("players", "add", "Carter", "--admin", "--room", OTHER_ROOM)
    (carter,) = records(lines)
    assert carter["room_id"] == OTHER_ROOM
    _, lines, _ = run("players", "add", "Randolph", "--user-id", carter["user_id"])
    (randolph,) = records(lines)
    assert randolph["user_id"] == carter["user_id"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["Dyer", "carter"], "Player name 'carter' is taken"),
        (["Dyer", "--room", "nowhere"], "Room 'nowhere' not found"),
        (["Dyer", "--user-id", "no-such-user"], "User 'no-such-user' not found"),
        (["Dyer", "9lives"], "Invalid player name '9lives'"),
    ],
)
def test_refused_players_add_exits_2_and_creates_nothing(
    run: RunCli, argv: list[str], message: str
) -> None:
    run("players", "add", "Carter")
    code, lines, err = run("players", "add", *argv)
    assert (code, lines) == (2, [])
    assert message in err
    assert [r["name"] for r in records(run("players", "list")[1])] == ["Carter"]


def test_players_add_with_an_unreadable_world_exits_2(run: RunCli, tmp_path: Path) -> None:
    code, _, err = run("players", "add", "Carter", MYTHOS_RT_WORLD=str(tmp_path / "none.json"))
    assert code == 2
    assert "none.json: cannot read the world file" in err


def test_players_commands_ignore_unrelated_bad_settings(run: RunCli) -> None:
    code, _, _ = run("players", "add", "Carter", MYTHOS_RT_PORT="not-a-port")
    assert code == 0


# --- token ---


def stored_hash(data_dir: Path, name: str) -> str | None:
    backend = SqliteBackend.open(Settings(data_dir=data_dir).store_path)
    try:
        found = backend.password_hash_by_name(name)
    finally:
        backend.close()
    return None if found is None else found[1]


def test_players_add_with_a_password_stores_only_a_hash(run: RunCli, data_dir: Path) -> None:
    code, lines, err = run("players", "add", "Carter", "Pickman", "--password", "elder sign")
    assert (code, err, len(lines)) == (0, "", 2)
    for name in ("Carter", "Pickman"):
        stored = stored_hash(data_dir, name)
        assert stored is not None and "elder sign" not in stored
        assert verify_password("elder sign", stored)


def test_players_passwd_reads_one_line_from_stdin(
    run: RunCli, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("players", "add", "Carter")
    assert stored_hash(data_dir, "Carter") is None
    monkeypatch.setattr(sys, "stdin", io.StringIO("yog sothoth\nignored\n"))
    code, lines, err = run("players", "passwd", "carter")
    assert (code, lines) == (0, [])
    assert "Carter" in err and "yog sothoth" not in err
    stored = stored_hash(data_dir, "Carter")
    assert stored is not None and verify_password("yog sothoth", stored)


@pytest.mark.parametrize("argv", [["players", "add", "Carter", "--password", "short"]])
def test_a_short_password_is_refused_and_nothing_is_created(run: RunCli, argv: list[str]) -> None:
    code, lines, err = run(*argv)
    assert (code, lines) == (2, [])
    assert "at least 8 characters" in err
    assert run("players", "list")[1] == []


def test_players_passwd_for_an_unknown_name_exits_2(
    run: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("long enough\n"))
    code, _, err = run("players", "passwd", "Nobody")
    assert code == 2 and "not found" in err


def test_invites_create_prints_n_distinct_codes(run: RunCli) -> None:
    code, lines, err = run("invites", "create", "3")
    assert (code, err, len(set(lines))) == (0, "", 3)
    code, lines, _ = run("invites", "create")
    assert (code, len(lines)) == (0, 1)


def test_invites_create_refuses_a_bad_count(run: RunCli) -> None:
    with pytest.raises(SystemExit):
        run("invites", "create", "0")


def test_token_prints_a_verifiable_jwt_per_name(run: RunCli) -> None:
    _, lines, _ = run("players", "add", "Carter", "Pickman")
    users = {r["name"]: r["user_id"] for r in records(lines)}
    code, tokens, _ = run("token", "carter", "Pickman", MYTHOSMUD_JWT_SECRET=SECRET)
    assert code == 0
    assert len(tokens) == 2
    subs = [verify(token, SECRET).user_id for token in tokens]
    assert subs == [users["Carter"], users["Pickman"]]


def test_token_uses_the_ttl_and_audience(run: RunCli) -> None:
    run("players", "add", "Carter")
    env = {"MYTHOSMUD_JWT_SECRET": SECRET, "MYTHOS_RT_JWT_AUDIENCE": "arkham"}
    _, (token,), _ = run("token", "Carter", "--ttl", "60", **env)
    verified = verify(token, SECRET, audience="arkham")
    payload = json.loads(_b64(token.split(".")[1]))
    assert payload["exp"] - payload["iat"] == 60
    assert verified.expires_at == payload["exp"]


def test_token_creates_and_reuses_the_data_dir_secret(run: RunCli, data_dir: Path) -> None:
    run("players", "add", "Carter")
    _, (first,), err = run("token", "Carter")
    assert "Created a new JWT secret" in err
    secret = (data_dir / "jwt_secret").read_text(encoding="utf-8").strip()
    verify(first, secret)
    _, (second,), err = run("token", "Carter")
    assert err == ""
    verify(second, secret)


def test_token_for_an_unknown_name_exits_2(run: RunCli, data_dir: Path) -> None:
    run("players", "add", "Carter")
    code, lines, err = run("token", "Carter", "Nobody")
    assert (code, lines) == (2, [])
    assert "Player 'Nobody' not found" in err
    assert not (data_dir / "jwt_secret").exists()


@pytest.mark.parametrize("ttl", ["0", "-5", "soon"])
def test_token_refuses_a_bad_ttl(run: RunCli, ttl: str) -> None:
    with pytest.raises(SystemExit) as exc_info:
        run("token", "Carter", "--ttl", ttl)
    assert exc_info.value.code == 2


def verify(token: str, secret: str, audience: str = "fastapi-users:auth") -> Any:
    return verify_token(
        token, secret, algorithms=["HS256"], audience=audience, leeway_s=0, max_bytes=8192
    )


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# --- settings from flags and environment ---


def serve_settings(argv: list[str], environ: dict[str, str]) -> Settings:
    return settings_from(build_parser().parse_args(["serve", *argv]), environ)


def test_defaults_without_flags_or_environment() -> None:
    settings = serve_settings([], {})
    expected = Settings(instance_id=settings.instance_id)
    assert settings == expected


@pytest.mark.parametrize(
    ("argv", "environ", "port"),
    [
        ([], {}, 54768),
        ([], {"MYTHOS_RT_PORT": "9001"}, 9001),
        (["--port", "9002"], {}, 9002),
        (["--port", "9002"], {"MYTHOS_RT_PORT": "9001"}, 9002),
    ],
)
def test_flag_beats_environment_beats_default(
    argv: list[str], environ: dict[str, str], port: int
) -> None:
    assert serve_settings(argv, environ).port == port


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("On", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("OFF", False),
    ],
)
def test_bool_values(text: str, value: bool) -> None:
    assert serve_settings([], {"MYTHOS_RT_REQUIRE_CSRF": text}).require_csrf is value
    assert serve_settings(["--require-csrf", text], {}).require_csrf is value


def test_bare_bool_flag_means_true() -> None:
    environ = {"MYTHOS_RT_REQUIRE_CSRF": "false"}
    assert serve_settings(["--require-csrf"], environ).require_csrf is True


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("https://a.example, https://b.example", ("https://a.example", "https://b.example")),
        (" a ,, b ,", ("a", "b")),
        ("", ()),
        ("single", ("single",)),
    ],
)
def test_tuple_values(text: str, value: tuple[str, ...]) -> None:
    assert serve_settings([], {"MYTHOS_RT_ALLOWED_ORIGINS": text}).allowed_origins == value
    assert serve_settings(["--allowed-origins", text], {}).allowed_origins == value


def test_empty_values_unset_optional_settings() -> None:
    environ = {"MYTHOS_RT_NATS_URL": "", "MYTHOS_RT_WORLD": ""}
    settings = serve_settings([], environ)
    assert settings.nats_url is None
    assert settings.world is None
    overridden = serve_settings(["--nats-url", ""], {"MYTHOS_RT_NATS_URL": "nats://x:4222"})
    assert overridden.nats_url is None


def test_optional_settings_take_values() -> None:
    environ = {"MYTHOS_RT_NATS_URL": "nats://x:4222", "MYTHOS_RT_WORLD": "w.json"}
    settings = serve_settings(["--data-dir", "/srv/mythos"], environ)
    assert settings.nats_url == "nats://x:4222"
    assert settings.world == Path("w.json")
    assert settings.data_dir == Path("/srv/mythos")


def as_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(value)
    return "" if value is None else str(value)


def test_every_setting_has_a_flag_and_a_variable() -> None:
    # Non-default values for every field, written as text, must come back through both routes.
    wanted = {f.name: _changed(getattr(Settings(), f.name)) for f in setting_fields()}
    environ = {env_var(name): as_text(value) for name, value in wanted.items()}
    argv = [
        arg for name, v in wanted.items() for arg in (f"--{name.replace('_', '-')}", as_text(v))
    ]
    assert values_of(serve_settings([], environ)) == wanted
    assert values_of(serve_settings(argv, {})) == wanted


def values_of(settings: Settings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in setting_fields()}


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, tuple):
        return (*value, "extra")
    if isinstance(value, Path):
        return value / "sub"
    if value is None:
        return None
    return f"{value}-changed"


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("MYTHOS_RT_REQUIRE_CSRF", "maybe", "invalid boolean 'maybe'"),
        ("MYTHOS_RT_PORT", "eighty", "invalid integer 'eighty'"),
        ("MYTHOS_RT_GRACE_S", "soon", "invalid number 'soon'"),
        ("MYTHOS_RT_DATA_DIR", "", "empty path"),
    ],
)
def test_bad_environment_value_is_an_argparse_error_naming_it(
    capsys: pytest.CaptureFixture[str], variable: str, value: str, problem: str
) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main(["serve"], environ={variable: value})
    assert exc_info.value.code == 2
    err = capsys.readouterr().err
    assert variable in err
    assert problem in err


def test_bad_flag_value_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main(["serve", "--require-csrf", "maybe"], environ={})
    assert exc_info.value.code == 2
    assert "--require-csrf" in capsys.readouterr().err


# --- serve (with a stand-in for the server) ---


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def run_server(settings: Settings, *, secret: str, secret_created: bool) -> int:
        calls.append({"settings": settings, "secret": secret, "created": secret_created})
        return 0

    fake = types.ModuleType("mythos_rt.runtime.server")
    fake.run_server = run_server  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mythos_rt.runtime.server", fake)
    # basicConfig would attach a handler to the root logger for the rest of the test session.
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: calls.append(kwargs))
    return calls


def test_no_command_means_serve(served: list[dict[str, Any]], data_dir: Path) -> None:
    environ = {"MYTHOS_RT_DATA_DIR": str(data_dir), "MYTHOSMUD_JWT_SECRET": SECRET}
    assert main([], environ=environ) == 0
    logging_call, server_call = served
    assert logging_call["level"] == "INFO"
    assert server_call["secret"] == SECRET
    assert server_call["created"] is False
    assert server_call["settings"].data_dir == data_dir


def test_flags_without_a_command_go_to_serve(served: list[dict[str, Any]], data_dir: Path) -> None:
    argv = ["--port", "9000", "--log-level", "debug", "--data-dir", str(data_dir)]
    assert main(argv, environ={}) == 0
    logging_call, server_call = served
    assert logging_call["level"] == "DEBUG"
    assert server_call["settings"].port == 9000
    assert server_call["created"] is True
    assert (data_dir / "jwt_secret").read_text(encoding="utf-8").strip() == server_call["secret"]


def test_serve_refuses_an_unknown_log_level(
    served: list[dict[str, Any]], run: RunCli, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run("serve", MYTHOS_RT_LOG_LEVEL="chatty")
    assert code == 2
    assert "unknown log level 'chatty'" in err
    assert served == []


# --- help ---


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--help"], "examples:"),
        (["-h"], "players"),
        (["serve", "--help"], "MYTHOS_RT_GRACE_S"),
        (["players", "--help"], "examples:"),
        (["players", "add", "--help"], "examples:"),
        (["players", "list", "--help"], "example:"),
        (["token", "--help"], "examples:"),
    ],
)
def test_help_exits_0(capsys: pytest.CaptureFixture[str], argv: list[str], expected: str) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main(argv, environ={})
    assert exc_info.value.code == 0
    assert expected in capsys.readouterr().out


def test_serve_help_groups_flags_and_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"], environ={})
    out = capsys.readouterr().out
    groups = dict.fromkeys(f.metadata["group"] for f in setting_fields())
    for group in groups:
        assert f"{group} settings:" in out
    assert "default: 54768" in " ".join(out.split())


# --- the real process ---


def test_subprocess_adds_a_thousand_players(tmp_path: Path) -> None:
    names = [f"Cultist{i:04d}" for i in range(1000)]
    env = {**os.environ, "MYTHOS_RT_DATA_DIR": str(tmp_path / "data")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "mythos_rt", "players", "add", *names],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1000
    assert [json.loads(line)["name"] for line in lines] == names


@pytest.mark.parametrize(
    "url", ["play.example.org", "ftp://play.example.org", "https://", "https://x.org/?a=1"]
)
def test_an_unusable_public_url_is_one_line_and_exit_2(
    served: list[dict[str, Any]], data_dir: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    environ = {"MYTHOS_RT_DATA_DIR": str(data_dir), "MYTHOSMUD_JWT_SECRET": SECRET}
    assert main(["serve", "--public-url", url], environ=environ) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PUBLIC_URL" in err and url in err
    assert not [call for call in served if "settings" in call]


def test_a_public_url_reaches_the_server(served: list[dict[str, Any]], data_dir: Path) -> None:
    environ = {"MYTHOS_RT_DATA_DIR": str(data_dir), "MYTHOSMUD_JWT_SECRET": SECRET}
    environ["MYTHOS_RT_PUBLIC_URL"] = "https://play.example.org/arkham"
    assert main([], environ=environ) == 0
    assert served[-1]["settings"].public_url == "https://play.example.org/arkham"

# --- ranges (settings.RANGES) ---


def test_every_range_names_a_numeric_setting_and_admits_its_default() -> None:
    numeric = {f.name for f in setting_fields() if setting_types()[f.name] in (int, float)}
    assert set(RANGES) <= numeric
    for name in numeric:
        allowed = range_of(name)
        assert allowed is not None and allowed.admits(getattr(Settings(), name)), name


@pytest.mark.parametrize(
    ("variable", "value"),
    [("MYTHOS_RT_PORT", "65536"), ("MYTHOS_RT_GRACE_S", "nan"), ("MYTHOS_RT_REST_S", "-1")],
)
def test_a_value_out_of_range_exits_2_in_one_line_before_serving(
    served: list[dict[str, Any]], run: RunCli, variable: str, value: str
) -> None:
    code, lines, err = run("serve", **{variable: value})
    assert (code, lines, served) == (2, [], [])
    assert len(err.splitlines()) == 1
    assert variable in err and value in err


def test_a_command_checks_only_the_settings_it_reads(run: RunCli) -> None:
    code, _, _ = run("players", "add", "Carter", MYTHOS_RT_PORT="99999")
    assert code == 0


def test_a_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main(["players", "passwd"], environ={})
    assert exc_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "players passwd" in err and "--help" in err


# --- players delete | rename | admin | ban | unban ---


def stored(data_dir: Path, name: str, database_url: str | None = None) -> PlayerRecord | None:
    backend = open_backend(Settings(data_dir=data_dir, database_url=database_url))
    try:
        return backend.find_player_by_name(name)
    finally:
        backend.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_moderation_commands_print_one_json_line_and_change_the_store(
    run: RunCli, data_dir: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    env = {} if url is None else {"MYTHOS_RT_DATABASE_URL": url}
    _, lines, _ = run("players", "add", "Carter", "Pickman", **env)
    carter_id = records(lines)[0]["player_id"]

    code, lines, err = run("players", "rename", "carter", "Randolph", **env)
    assert code == 0 and "admin action: players rename Randolph; was Carter" in err
    (renamed,) = records(lines)
    assert (renamed["player_id"], renamed["name"], renamed["old_name"]) == (
        carter_id,
        "Randolph",
        "Carter",
    )

    code, lines, _ = run("players", "admin", "Randolph", **env)
    assert (code, records(lines)[0]["is_admin"]) == (0, True)
    code, lines, _ = run("players", "admin", "Randolph", "--off", **env)
    assert (code, records(lines)[0]["is_admin"]) == (0, False)

    code, lines, _ = run("players", "ban", "Pickman", "--reason", "spam", "--until", "2h", **env)
    (line,) = records(lines)
    assert (code, line["banned"], line["ban_reason"]) == (0, True, "spam")
    pickman = stored(data_dir, "Pickman", url)
    assert pickman is not None and pickman.banned_at(time.time())
    assert pickman.banned_until is not None
    assert 7100 < pickman.banned_until - time.time() <= 7200
    code, lines, _ = run("players", "unban", "Pickman", **env)
    assert (code, records(lines)[0]["banned"]) == (0, False)
    pickman = stored(data_dir, "Pickman", url)
    assert pickman is not None and not pickman.banned

    code, lines, _ = run("players", "delete", "Randolph", **env)
    assert (code, records(lines)[0]["deleted"]) == (0, True)
    assert [r["name"] for r in records(run("players", "list", **env)[1])] == ["Pickman"]


@pytest.mark.parametrize(
    "argv",
    [
        ["delete", "Nobody"],
        ["rename", "Nobody", "Somebody"],
        ["admin", "Nobody"],
        ["ban", "Nobody"],
        ["unban", "Nobody"],
    ],
)
def test_moderating_an_unknown_player_is_one_line_and_exit_2(run: RunCli, argv: list[str]) -> None:
    run("players", "add", "Carter")
    code, lines, err = run("players", *argv)
    assert (code, lines, err) == (2, [], "error: Player 'Nobody' not found\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rename", "Carter", "pickman"], "Player name 'pickman' is taken"),
        (["rename", "Carter", "9lives"], "Invalid player name '9lives'"),
    ],
)
def test_refused_renames_change_nothing(run: RunCli, argv: list[str], message: str) -> None:
    run("players", "add", "Carter", "Pickman")
    before = run("players", "list")[1]
    code, lines, err = run("players", *argv)
    assert (code, lines) == (2, [])
    assert message in err
    assert run("players", "list")[1] == before


@pytest.mark.parametrize(
    ("until", "message"),
    [("2001-01-01", "'2001-01-01' is in the past"), ("soon", "invalid time 'soon'")],
)
def test_a_ban_end_in_the_past_or_unreadable_is_a_usage_error(
    run: RunCli, data_dir: Path, capsys: pytest.CaptureFixture[str], until: str, message: str
) -> None:
    run("players", "add", "Carter")
    with pytest.raises(SystemExit) as exc_info:
        run("players", "ban", "Carter", "--until", until)
    assert exc_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err
    carter = stored(data_dir, "Carter")
    assert carter is not None and not carter.banned


def test_ban_until_takes_a_utc_date_time(run: RunCli, data_dir: Path) -> None:
    run("players", "add", "Carter")
    code, lines, _ = run("players", "ban", "Carter", "--until", "2999-12-24T18:00:00Z")
    assert (code, records(lines)[0]["banned_until"]) == (0, "2999-12-24T18:00:00Z")
    carter = stored(data_dir, "Carter")
    assert carter is not None and carter.ban_reason is None
