"""Errors a user can cause. The CLI turns each into one line on stderr and exit status 2.

Every error class of the project that means "the user's input is wrong" derives from `UserError` (defined in
`search_spaces.errors`, the bottom layer, so the space's own errors can derive from it too).
"""

from __future__ import annotations

from search_spaces.errors import UserError

__all__ = ["UserError"]
