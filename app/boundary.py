"""The one place a visitor's mistake becomes a message: :class:`UserInputError` (and any
:class:`jepa4rec.errors.UserError`, e.g. a data file the app cannot read) is caught here, for the UI (a warning toast; every output stays as it was) and for the API (a
``gr.Error`` that ``gradio_client`` raises with the message). Anything else is a bug and propagates."""
from __future__ import annotations

import functools

import gradio as gr

from jepa4rec.errors import UserError


class UserInputError(ValueError):
    """A visitor's input the app refuses, with a message that says why; shown to them, never a traceback."""


def _caught(fn, on_error):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (UserInputError, UserError) as err:
            return on_error(err)
    return wrapper


def _raise_gr_error(err: Exception):
    raise gr.Error(str(err)) from None


def _warn_and_skip(err: Exception):
    gr.Warning(str(err))
    return gr.skip()


def api_boundary(fn):
    """An API endpoint: a mistake is a ``gr.Error`` carrying its message."""
    return _caught(fn, _raise_gr_error)


def ui_boundary(fn):
    """A UI callback: a mistake is a warning toast and leaves every output as it was."""
    return _caught(fn, _warn_and_skip)
