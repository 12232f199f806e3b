"""Errors a user can cause. The CLI turns each into one line on stderr and exit status 2."""

from __future__ import annotations

from search_spaces.config import ConfigError
from search_spaces.diffusers_compat import ConversionError
from search_spaces.registry import UnknownNameError
from search_spaces.space import NotInSpaceError


class UserError(Exception):
    """Bad input from the user (flag, file, name, storage): reported in one line, exit status 2."""


# Every exception type that means "the user's input is wrong", not "the program is broken".
USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError, ConfigError, ConversionError, UnknownNameError, NotInSpaceError,
)
