"""Expected failures: mistakes in what a user gave (a file, an option, a name) or in the environment (no
network), as opposed to bugs in the code.

Each carries a ``hint`` (what to do) that ``str()`` appends after an em dash, so the app, a log and the
command line all show the same complete line. :mod:`jepa4rec.cli` prints these as one line and exits 2;
any other exception is a bug and keeps its traceback. This module imports nothing heavy: every layer
(data readers, configs, checkpoints) raises these.
"""
from __future__ import annotations


class UserError(Exception):
    """A failure the user can fix; the message names the file or option, the hint says how."""

    hint = ""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ConfigError(UserError, ValueError):
    """An option with an unknown name, a value of the wrong type, or an impossible value."""

    hint = "correct it with --set KEY=VALUE or in the --config file"


class TrainingDiverged(UserError, FloatingPointError):
    """The loss became NaN or infinite; the message names the step and the checkpoint to resume from."""

    hint = "lower optim.lr or check the data, then --resume"


class RepeatedKey(UserError, KeyError):
    """A key given twice in one JSON object; callers name the file (and line) around it."""

    def __init__(self, key: str):
        super().__init__(f"key {key!r} repeats")
        self.key = key

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.message


def no_repeated_keys(pairs: list) -> dict:
    """``object_pairs_hook`` for :func:`json.loads`, which otherwise keeps the last of two equal keys silently
    and so loses the first one's value."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise RepeatedKey(key)
        out[key] = value
    return out

