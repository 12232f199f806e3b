"""The base class of every error a user can cause (flag, file, name, storage, space).

It lives in `search_spaces`, the bottom layer, so that the space's own errors (ConfigError, UnknownNameError,
...) derive from it and "bad input" is one `except UserError` everywhere. The CLI turns each into one line on
stderr and exit status 2.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (flag, file, name, storage): reported in one line, exit status 2."""
