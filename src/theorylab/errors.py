"""Exception classes: one per failure kind, each carrying a one-line message.

The CLI prints ``error: <message>`` and exits with status 2 for any :class:`TheorylabError`.
"""

from __future__ import annotations

__all__ = ["TheorylabError", "ConfigError", "InputError", "DataFormatError", "StoreError",
           "TrainingDivergedError"]


class TheorylabError(Exception):
    """Base class of every error theorylab raises on purpose (bad input, bad config, ...)."""


class ConfigError(TheorylabError, ValueError):
    """A config field, option or name (claim id, expert family, ...) is unknown or out of range."""


class InputError(TheorylabError, ValueError):
    """An array argument has the wrong shape, a non-finite entry or values out of range."""


class DataFormatError(TheorylabError, ValueError):
    """A user's file is malformed; the message names the file and line."""

    def __init__(self, message: str, path: object | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line


class StoreError(TheorylabError):
    """The results store lacks what was asked of it (e.g. a figure before its study ran)."""


class TrainingDivergedError(TheorylabError):
    """Training produced a non-finite loss; the message names the step and epoch.

    Not an :class:`InputError`: the inputs were valid, the optimisation blew up (lower the
    learning rate). ``result`` holds the history up to the last finished step.
    """

    def __init__(self, message: str, step: int | None = None, epoch: int | None = None,
                 result: object | None = None):
        super().__init__(message)
        self.step = step
        self.epoch = epoch
        self.result = result
