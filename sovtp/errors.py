"""Errors that end a whole run with one sentence for the user (no traceback).

Per-item problems never raise this: they become error records and the run goes on.
This is for what makes every item fail the same way — a dead server, a broken
template, a missing model — so the user hears it once, at the start.
"""


class UserError(Exception):
    """A run-level problem; ``str(exc)`` names the problem and the fix in one sentence."""
