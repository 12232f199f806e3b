"""Errors a user can cause (the CLI turns each into one line on stderr and exit status 2), and `RunFailed`: a run
that ended without the result it was asked for although its input was fine (one line, exit status 1).

Every error class of the project that means "the user's input is wrong" derives from `UserError` (defined in
`search_spaces.errors`, the bottom layer, so the space's own errors can derive from it too).
"""

from __future__ import annotations

from search_spaces.errors import UserError

__all__ = ["RunFailed", "UserError"]


class RunFailed(Exception):
    """A run ended without a result (e.g. every trial of a search failed); the message says why and how to go on."""
