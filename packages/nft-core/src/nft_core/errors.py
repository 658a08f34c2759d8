"""Errors that mean *the user's input is wrong* (exit code 2 in every CLI).

Everything here derives from :class:`NFTInputError`; CLIs catch it, print its one-line message and exit 2.
Any other exception is a bug in this project and keeps its traceback.
"""

from __future__ import annotations


class NFTInputError(Exception):
    """Bad input: a file, key, shape, class count or option that cannot work. Message is one line."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # force a single line


class CheckpointError(NFTInputError):
    """A checkpoint is missing, corrupt, untrusted (pickle) or does not fit the model."""


class DataError(NFTInputError):
    """A dataset file or folder is missing, malformed, empty or inconsistent."""


class ConfigError(NFTInputError):
    """A config file or override names an unknown key or has a wrong type."""


class UnsupportedError(NFTInputError):
    """A method cannot apply to this task or model (e.g. I-BAU on discrete token inputs)."""
