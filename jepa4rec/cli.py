"""One error path for every command (``python -m jepa4rec.*`` and ``scripts/*.py``).

Wrap a command's ``main(argv=None)`` in :func:`command` and build its parser with :class:`ArgumentParser`:

* an expected failure (a :class:`~jepa4rec.errors.UserError` such as ``DataFormatError``,
  ``CheckpointError`` or ``ConfigError``, or a file that is missing or unreadable) prints one line,
  ``error: <what> (<file or option>) — <what to do>``, on stderr and exits 2, the code argparse uses for
  a usage mistake, so the same mistake ends the same way in every command;
* any other exception is a bug and keeps its traceback;
* ``--debug`` (every parser has it) prints the traceback of an expected failure too;
* ``parser.add_data_root_argument()`` gives a command the one ``--data-root DIR`` option (see
  :func:`jepa4rec.paths.data_root`);
* ``parser.add_device_argument()`` gives the one ``--device`` option, checked when parsed
  (:func:`jepa4rec.devices.resolve_device`: an unknown name or a GPU that is not there is one line);
* ``parser.add_threads_argument()`` gives a command the one ``--threads N`` option, applied to torch when
  the arguments are parsed (two jobs on the 2 cores run with ``--threads 1`` each).
"""
from __future__ import annotations

import argparse
import functools
import shlex
import sys
import traceback

from .errors import UserError
from .paths import DATA_ROOT_ENV

EXIT_CODE = 2
DEBUG_FLAG = "--debug"
# A path the user named that does not exist or cannot be read; any other OSError may be a bug.
EXPECTED = (UserError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def command_line(script: str, argv=None) -> str:
    """The command that ran, as one line a shell takes back: ``python <script> <args>``, each argument quoted
    where it needs to be (a label such as ``"JEPA4Rec (λ2 = 1)=runs/..."`` stays one argument). ``argv`` is what
    ``main`` was given; None means the process's own arguments."""
    return shlex.join(["python", script, *(sys.argv[1:] if argv is None else argv)])


class ArgumentParser(argparse.ArgumentParser):
    """argparse with ``--debug``, the same one-line errors as :func:`command` (exit 2) and a help text
    required of every argument."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument(DEBUG_FLAG, action="store_true",
                          help="show the traceback of any error (an expected mistake is otherwise one line)")

    def add_argument(self, *args, **kwargs):
        # Every option is documented in --help; one without a help text is a bug, caught by the --help tests.
        if not kwargs.get("help"):
            raise TypeError(f"{self.prog}: argument {'/'.join(args) or kwargs.get('dest')} needs a help text")
        return super().add_argument(*args, **kwargs)

    def add_data_root_argument(self, what: str = "folder holding the datasets"):
        self.add_argument("--data-root", default=None, metavar="DIR",
                          help=f"{what} (default: ${DATA_ROOT_ENV}, else ../shared/data beside the project)")

    def add_device_argument(self, default: str | None = None):
        shown = "cuda when present, else cpu" if default in (None, "auto") else default  # "auto": devices.AUTO
        self.add_argument("--device", type=_device, default=default, help=f"cpu, cuda or cuda:N (default: {shown})")

    def add_threads_argument(self, default: int | None = None):
        self.add_argument("--threads", type=_positive_int, default=default, metavar="N",
                          help="CPU threads for torch (default: " + (str(default) if default else "torch's choice")
                               + "; give each of two jobs sharing the machine's cores --threads 1)")

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        if getattr(parsed, "threads", None):
            import torch  # here, not at the top: a bare ``--help`` stays fast

            torch.set_num_threads(parsed.threads)
        return parsed, extras

    def error(self, message: str):
        self.exit(EXIT_CODE, f"error: {_one_line(message)} — see {self.prog} --help\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} — give 1 or more")
    return value


def _device(text: str) -> str:
    from .devices import resolve_device  # imports torch: only when --device is given

    try:
        resolve_device(text)
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_line(err: BaseException) -> str:
    """``error: <message> — <hint>`` on one line."""
    if isinstance(err, UserError):
        return f"error: {_one_line(err)}"
    if isinstance(err, OSError) and err.filename is not None:  # raised by open() and friends
        return f"error: {_one_line(err.strerror or err)} ({err.filename}) — check the path"
    return f"error: {_one_line(err)} — check the path"


def command(main):
    """Decorate a command's ``main(argv=None)``: expected failures become one line and exit code 2."""

    @functools.wraps(main)
    def run(argv=None):
        given = sys.argv[1:] if argv is None else list(argv)
        try:
            return main(argv)
        except EXPECTED as err:
            if DEBUG_FLAG in given:
                traceback.print_exc()
            print(error_line(err), file=sys.stderr)
            raise SystemExit(EXIT_CODE) from None

    return run
