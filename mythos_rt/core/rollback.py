"""All or nothing: what a rule changed is undone when the rule raises (the hardening issue).

Rules change the live state in place: presences move, a presence's fields change (pose, rest,
the last whisperer), follows, requests and parties are added and removed.  A rule that raised
halfway used to leave that state half-changed.  Copying the whole world before every command
would cost O(players) per line said, so the hub runs each rule inside :func:`all_or_nothing`:

- assignments to a :class:`~mythos_rt.core.presence.Presence` field are journaled by an attrs
  ``on_setattr`` hook (:func:`record_field`), and ``Presences.move`` journals its room index
  (:func:`note_undo`): the cost is one check per assignment, and undo work only on the rare
  rule that raised;
- the social relations (follows, requests, parties: small next to the players) are snapshotted
  whole before the rule and put back if it raised.

If the rule returns, nothing is undone and its effects are applied: the commit.  The journal is
module state because the hub runs one rule at a time on one thread; nested use joins the open
journal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import attrs

Undo = Callable[[], None]
_journal: list[Undo] | None = None

T = TypeVar("T")


class Restorable(Protocol[T]):
    def snapshot(self) -> T: ...
    def restore(self, snapshot: T) -> None: ...


def record_field(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> Any:
    """attrs ``on_setattr`` hook: remember the old value while a journal is open."""
    if _journal is not None:
        old, name = getattr(instance, attribute.name), attribute.name
        _journal.append(lambda: object.__setattr__(instance, name, old))
    return value


def note_undo(undo: Undo) -> None:
    """A container change and how to take it back, while a journal is open."""
    if _journal is not None:
        _journal.append(undo)


@contextmanager
def all_or_nothing(state: Restorable[Any]) -> Iterator[None]:
    """Run the body; if it raises, undo every journaled change and restore ``state``."""
    global _journal
    if _journal is not None:  # already inside a rule: its journal covers this too
        yield
        return
    snapshot = state.snapshot()
    journal: list[Undo] = []
    _journal = journal
    try:
        yield
    except BaseException:
        for undo in reversed(journal):
            undo()
        state.restore(snapshot)
        raise
    finally:
        _journal = None
