"""Which domains the full screen shows: a screenful around the cursor.

A host of thousands of threads has far more domains than the terminal has
lines; only the rows that fit are drawn, and the window scrolls to keep the
cursor's row on the screen (no root needed).
"""

from __future__ import annotations

from runstate.cli.top_rows import DomainRow, MemberRow
from runstate.cli.top_screen import ViewState, _on_screen
from runstate.model.states import DomainState

LINES = 10


def _rows(n: int, members_of: dict[int, int] | None = None) -> list[DomainRow]:
    members_of = members_of or {}
    return [DomainRow(
        key=f"thread:{i}", name=f"t{i}", members=1, ns=dict.fromkeys(DomainState, 0),
        current_state=None, current_for_ns=None, since_ns=None,
        totals_ns=dict.fromkeys(DomainState, 0), run_pct=0.0, ready_pct=0.0, missed=0,
        changes=0, member_rows=tuple(MemberRow(str(m), f"m{m}", "blocked", {})
                                     for m in range(members_of.get(i, 0))))
        for i in range(n)]


def _shown(rows: list[DomainRow], view: ViewState) -> list[int]:
    return [i for i, _ in _on_screen(rows, view, LINES)]


def test_the_window_follows_the_cursor_without_jumping() -> None:
    rows = _rows(100)
    view = ViewState()
    assert _shown(rows, view) == list(range(0, 10))
    view.cursor = 25  # below the screen: the window ends at the cursor
    assert _shown(rows, view) == list(range(16, 26))
    view.cursor = 20  # still on the screen: nothing moves
    assert _shown(rows, view) == list(range(16, 26))
    view.cursor = 5  # above it: the window starts at the cursor
    assert _shown(rows, view) == list(range(5, 15))
    view.cursor = 500  # past the last row: the last screenful
    assert _shown(rows, view) == list(range(90, 100))


def test_an_expanded_domain_takes_a_line_per_member() -> None:
    rows = _rows(100, members_of={7: 3})
    view = ViewState(cursor=7, top=5)
    assert _shown(rows, view) == list(range(5, 15))  # not expanded: a line each
    view.expanded = {"thread:7"}
    # rows 5, 6 (two lines), 7 and its members (four), then 8..11 fill the ten lines
    assert _shown(rows, view) == [5, 6, 7, 8, 9, 10, 11]
    view.top = 0  # rows 0..7 with 7's members take 11 lines: the window moves down one
    assert _shown(rows, view) == [1, 2, 3, 4, 5, 6, 7]
    assert view.top == 1
