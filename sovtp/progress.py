"""The terminal progress of a run, local or on Ray.

A rich bar names each finished item and its label. Above the bar, as it happens, it
prints the one-sentence reason of every item that failed and a line for every answer
outside the label set: a user watching a long run learns what went wrong, and with
which file, without opening the results file. Everything goes to stderr, with the
run's closing summary, so stdout stays free for whatever a script pipes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sovtp.types import Result

RAW_SHOWN = 80  # characters of an invalid answer shown on the terminal (the record keeps all)


def item_message(r: Result) -> str | None:
    """The rich-markup lines to print for a finished item, or None when it went well."""
    lines = [m for m in (_outcome_message(r), *map(note_message, r.notes)) if m is not None]
    return "\n".join(lines) or None


def note_message(note: str) -> str:
    """The rich-markup line for a note about an input the run went on with (a cut-short video)."""
    from rich.markup import escape

    return f"[yellow]warning[/] {escape(note)}"


def _outcome_message(r: Result) -> str | None:
    from rich.markup import escape

    name = Path(r.path).name
    if r.status == "error":
        return f"[red]error[/] {escape(r.error or f'{name}: failed')}"
    if r.status == "invalid":
        raw = " ".join((r.raw_answer or "").split())
        shown = raw if len(raw) <= RAW_SHOWN else raw[: RAW_SHOWN - 1] + "…"
        return f"[yellow]invalid[/] {escape(name)}: the answer names no label of the set (kept in the record): {escape(repr(shown))}"
    return None


class RunBar:
    """A started progress bar over ``total`` items; ``tick`` per finished item,
    ``advance`` for one skipped as already done, ``close`` at the end."""

    def __init__(self, total: int, title: str = "sovtp") -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn(f"[bold]{title}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._progress.start()
        self._task = self._progress.add_task("run", total=total, last="")
        self._moved = False

    def tick(self, r: Result) -> None:
        self._moved = True
        message = item_message(r)
        if message is not None:
            self._progress.console.print(message, soft_wrap=True)
        shown = r.label if r.status == "ok" else r.status
        from rich.markup import escape

        self._progress.update(self._task, advance=1, last=escape(f"{Path(r.path).name}: {shown}"))  # a file name is text, not markup

    def advance(self) -> None:
        self._moved = True
        self._progress.update(self._task, advance=1)

    def complete(self, done: int) -> None:
        self._progress.update(self._task, completed=done)

    def close(self, failed: bool = False) -> None:
        """Stop the bar. A run that ``failed`` before any item moved it (a dead server, a
        rejected key) leaves no empty "0/N" bar above its one-sentence error."""
        if failed and not self._moved:
            self._progress.live.transient = True
        self._progress.stop()
