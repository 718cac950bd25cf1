"""The library's error family.

Every problem a user can cause or fix (bad data, a missing model, a run directory in the way) is an
`IcmError` subclass with a one-line message that names the problem and what to do. The CLI maps
`UserError` to exit code 2 and anything else to exit code 1; the library itself never prints or exits.
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
    """A run directory cannot be created, resumed or read."""


class InternalError(IcmError):
    """A broken invariant inside icm_lite: a bug to report, not a user mistake."""
