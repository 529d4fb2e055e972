"""The admin ``shutdown [seconds]|cancel`` command as data (sections 9 and 14)."""

from __future__ import annotations

import pytest

from mythos_rt.core.effects import ShutdownCountdown
from tests.core.test_social import Game, pid, say_to

USAGE = "Usage: shutdown [seconds] | shutdown cancel"


@pytest.mark.parametrize(
    ("args", "seconds"),
    [((), 10), (("0",), 0), (("25",), 25), (("86400",), 86400), (("CANCEL",), None)],
)
def test_an_admin_starts_or_cancels_the_countdown(
    args: tuple[str, ...], seconds: int | None
) -> None:
    assert Game().run("Wyatt", "shutdown", *args) == [ShutdownCountdown(pid("Wyatt"), seconds)]


@pytest.mark.parametrize("args", [("86401",), ("-5",), ("²",), ("١٢",), ("9" * 400,), ("1", "2")])
def test_unusable_arguments_get_the_usage(args: tuple[str, ...]) -> None:
    assert Game().run("Wyatt", "shutdown", *args) == [say_to("Wyatt", USAGE)]


def test_players_do_not_have_the_command() -> None:
    unknown = "Unknown command: shutdown. Use 'help' for available commands."
    assert Game().run("Alice", "shutdown", "5") == [say_to("Alice", unknown)]
