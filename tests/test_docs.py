"""The docs stay true: the generated settings reference matches mythos_rt.settings and every
setting is a ``serve`` flag; docs/PROTOCOL.md keeps every command, client message type and close
code; relative links between the docs resolve."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from mythos_rt.__main__ import env_var, main
from mythos_rt.settings import setting_fields

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "scripts" / "gen_settings_doc.py"
CONFIGURATION = ROOT / "docs" / "CONFIGURATION.md"


def _load_generator() -> ModuleType:
    # scripts/ is not a package: load the script by path.
    spec = importlib.util.spec_from_file_location("gen_settings_doc", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return _load_generator()


def test_configuration_doc_is_current(generator: ModuleType) -> None:
    # On failure: run `python scripts/gen_settings_doc.py` and commit docs/CONFIGURATION.md.
    assert CONFIGURATION.read_text(encoding="utf-8") == generator.render()
    assert generator.main(["--check"]) == 0


def test_check_fails_on_a_stale_doc(generator: ModuleType, tmp_path: Path) -> None:
    stale = tmp_path / "CONFIGURATION.md"
    stale.write_text(generator.render().replace("--grace-s", "--old-name"), encoding="utf-8")
    assert generator.main(["--check", "--output", str(stale)]) == 1
    assert generator.main(["--check", "--output", str(tmp_path / "missing.md")]) == 1


def test_generator_writes_the_doc(generator: ModuleType, tmp_path: Path) -> None:
    output = tmp_path / "CONFIGURATION.md"
    assert generator.main(["--output", str(output)]) == 0
    assert generator.main(["--check", "--output", str(output)]) == 0


@pytest.mark.parametrize("name", [field.name for field in setting_fields()])
def test_every_setting_is_in_the_doc(name: str) -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    assert f"`--{name.replace('_', '-')}`" in text
    assert f"`{env_var(name)}`" in text


def test_every_setting_is_a_serve_flag(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps help to the terminal width
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    missing = [
        field.name
        for field in setting_fields()
        if "--" + field.name.replace("_", "-") not in out or env_var(field.name) not in out
    ]
    assert missing == []


# --- docs/PROTOCOL.md: the protocol reference shipped with the project -------------------------

PROTOCOL = ROOT / "docs" / "PROTOCOL.md"

# The commands of the protocol's command table (section 9) and of sections 10, 11 and 14, with
# their aliases. Dropping one from docs/PROTOCOL.md fails this test.
PROTOCOL_COMMANDS = (
    "look", "go", "north", "south", "east", "west", "northeast", "northwest", "southeast",
    "southwest", "up", "down", "n", "s", "e", "w", "ne", "nw", "se", "sw", "u", "d",
    "say", "local", "l", "global", "g", "emote", "me", "pose", "whisper", "reply", "who",
    "whoami", "help", "time", "quit", "logout", "rest", "mute", "unmute", "mutes", "follow",
    "unfollow", "following", "party", "party invite", "party list", "party leave", "party kick",
    "system", "mute_global", "unmute_global", "shutdown", "shutdown cancel",
)  # fmt: skip

CLIENT_MESSAGE_TYPES = (
    "command", "game_command", "chat", "ping", "follow_response", "party_invite_response",
    "refresh_token", "client_error_report",
)  # fmt: skip

# Section 15: every close code, and the exact reason where the code has one fixed reason.
CLOSE_CODES = {
    1000: "Goodbye",
    1001: "Server shutting down",
    1008: "Policy violation",
    1009: "Message too big",
    1011: "Internal error",
    1013: "Client too slow",
    4000: "New game session established",
    4001: "Connection cleaned up",
    4401: "Token expired",
    4403: None,
    4404: None,
    4409: "Session ended",
    4429: None,
    4503: None,
}


def _protocol_text() -> str:
    return PROTOCOL.read_text(encoding="utf-8")


def _section(text: str, number: int) -> str:
    match = re.search(rf"^## {number}\. .*?(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"section {number} missing from docs/PROTOCOL.md"
    return match.group(0)


def test_protocol_doc_is_versioned() -> None:
    head = _protocol_text()[:2000]
    assert "Protocol version 1.1" in head
    assert "Changes since 1.0" in head


@pytest.mark.parametrize("command", PROTOCOL_COMMANDS)
def test_every_protocol_command_is_documented(command: str) -> None:
    # In a code span on its own (`look`) or with arguments (`go <dir>`).
    assert re.search(rf"`/?{re.escape(command)}[` ]", _protocol_text()), command


def test_every_registered_command_is_documented() -> None:
    from mythos_rt.core.commands import REGISTRY

    text = _protocol_text()
    names = {name for spec in REGISTRY for name in (spec.name, *spec.aliases)}
    missing = sorted(n for n in names if not re.search(rf"`/?{re.escape(n)}[` ]", text))
    assert missing == []


@pytest.mark.parametrize("message_type", CLIENT_MESSAGE_TYPES)
def test_every_client_message_type_is_documented(message_type: str) -> None:
    assert f"`{message_type}`" in _section(_protocol_text(), 6)


@pytest.mark.parametrize("code", sorted(CLOSE_CODES))
def test_every_close_code_is_in_the_table(code: int) -> None:
    rows = [
        line
        for line in _section(_protocol_text(), 15).splitlines()
        if line.startswith(f"| {code} |")
    ]
    assert rows, f"close code {code} missing from the table in section 15"
    reason = CLOSE_CODES[code]
    if reason is not None:
        assert any(f"| {code} | {reason} |" in row for row in rows), (code, reason)


# --- links between the docs -------------------------------------------------------------------

DOCS = (ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md")))
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        slug = _slug(line.lstrip("#"))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in _LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        checks_anchor = bool(anchor) and linked.suffix == ".md"
        if not linked.exists() or (checks_anchor and anchor not in _anchors(linked)):
            broken.append(target)
    assert broken == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_do_not_point_outside_the_repository(doc: Path) -> None:
    # A clone has no ../shared: the protocol reference is docs/PROTOCOL.md.
    assert "../shared" not in doc.read_text(encoding="utf-8")
