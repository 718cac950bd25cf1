"""The library's error family.

Every problem a user can cause or fix (bad data, a missing model, a run directory in the way) is an
`IcmError` subclass with a one-line message that names the problem and what to do. The CLI prints
"error: <message>" on stderr and exits with the class's `exit_code`: 2 for `UserError`s, 1 for
`InternalError` (a bug), 128 + signal number for `Interrupted`. Anything that is not an `IcmError` is a
bug too and exits 1. The library itself never prints or exits.
"""


class IcmError(Exception):
    """Base class: anything icm_lite raises on purpose."""

    exit_code = 1


class UserError(IcmError):
    """The input, the options or the environment are wrong; the user can fix it."""

    exit_code = 2


class DataError(UserError):
    """A dataset or task file cannot be used as given."""


class ModelError(UserError):
    """A model cannot be found, fetched, checked or loaded."""


class RunError(UserError):
    """A run directory cannot be created, resumed, read or written."""


class InternalError(IcmError):
    """A broken invariant inside icm_lite: a bug to report, not a user mistake."""


class Interrupted(IcmError):
    """The user stopped a run (Ctrl-C, SIGTERM); what it had accepted so far is saved.

    Exits with the shell convention 128 + signal number: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, message: str, signum: int = 2):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


def one_line(e: BaseException, typed: bool = False) -> str:
    """An exception's message on one line (its lines joined); typed: prefix the type of one that is not an
    IcmError (a library's exception, which names itself only by its type)."""
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
    if typed and not isinstance(e, IcmError):
        return f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text or type(e).__name__


def show(value, limit: int = 60) -> str:
    """A value for an error message, cut to one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
