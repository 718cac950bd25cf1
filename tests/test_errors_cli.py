"""How the CLI reports failures: one line on stderr and an exit code, whatever went wrong.

    IcmError (user)     -> "error: <message>", exit 2
    InternalError       -> "internal error: <message> (run with --debug ...)", exit 1
    any other Exception -> "internal error: <Type>: <message> (run with --debug ...)", exit 1
    KeyboardInterrupt   -> "error: interrupted", exit 130 (outside a labeling run)
    click usage errors  -> click's own message, exit 2
    --debug             -> the exception propagates with its traceback
"""

import json

import pytest
from click.testing import CliRunner

import icm_lite.tasks
from icm_lite.cli import main
from icm_lite.errors import DataError, InternalError


@pytest.fixture
def data(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"id": "a", "question": "q", "choice": "c"}) + "\n")
    return p


def run(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def fail_with(monkeypatch, exc):
    """Make the first step of `label` (resolving the task) raise `exc`."""

    def boom(name):
        raise exc

    monkeypatch.setattr(icm_lite.tasks.Task, "resolve", staticmethod(boom))


def test_user_error_is_one_line_exit_2(monkeypatch, data, tmp_path):
    fail_with(monkeypatch, DataError("the data is\nbad on two lines"))
    res = run("label", data, "--out", tmp_path / "r")
    assert res.exit_code == 2
    assert res.stderr == "error: the data is bad on two lines\n"


def test_internal_error_exit_1(monkeypatch, data, tmp_path):
    fail_with(monkeypatch, InternalError("plan does not cover example 3"))
    res = run("label", data, "--out", tmp_path / "r")
    assert res.exit_code == 1
    assert res.stderr == "internal error: plan does not cover example 3 (run with --debug for the traceback)\n"


@pytest.mark.parametrize("exc", [ZeroDivisionError("division by zero"), KeyError("labels"),
                                 RuntimeError("llama_decode returned -3"), OSError(5, "Input/output error"),
                                 AttributeError("'NoneType' object has no attribute 'ctx'")])
def test_unexpected_exception_is_one_line_exit_1(monkeypatch, data, tmp_path, exc):
    fail_with(monkeypatch, exc)
    res = run("label", data, "--out", tmp_path / "r")
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"internal error: {type(exc).__name__}: ")
    assert lines[0].endswith("(run with --debug for the traceback)")


@pytest.mark.parametrize("code,text", [(28, "No space left on device"), (30, "Read-only file system"),
                                       (13, "Permission denied")])
def test_os_errors_of_the_environment_are_user_errors(monkeypatch, data, tmp_path, code, text):
    """A full disk or a read-only dir that escaped a RunError still reads as the user's problem."""
    fail_with(monkeypatch, OSError(code, text, "/runs/x/events.jsonl"))
    res = run("label", data, "--out", tmp_path / "r")
    assert res.exit_code == 2
    assert res.stderr == f"error: {text} (/runs/x/events.jsonl)\n"


def test_exception_with_an_empty_message(monkeypatch, data, tmp_path):
    fail_with(monkeypatch, AssertionError())
    res = run("label", data, "--out", tmp_path / "r")
    assert res.exit_code == 1
    assert res.stderr == "internal error: AssertionError: AssertionError (run with --debug for the traceback)\n"


def test_debug_shows_the_traceback(monkeypatch, data, tmp_path):
    fail_with(monkeypatch, ZeroDivisionError("division by zero"))
    res = run("--debug", "label", data, "--out", tmp_path / "r")
    assert isinstance(res.exception, ZeroDivisionError)  # propagated: Python prints the traceback
    assert "internal error" not in res.output
    fail_with(monkeypatch, DataError("bad"))
    res = run("--debug", "label", data, "--out", tmp_path / "r")
    assert isinstance(res.exception, DataError)


def test_ctrl_c_outside_a_run(monkeypatch, data, tmp_path):
    fail_with(monkeypatch, KeyboardInterrupt())
    res = run("label", data, "--out", tmp_path / "r")
    assert res.exit_code == 130
    assert res.stderr == "error: interrupted\n"


@pytest.mark.parametrize("args,says", [
    (["label", "d.jsonl", "--no-such-flag"], "No such option"),
    (["label", "d.jsonl", "--out", "r", "--n-ctx", "10"], "10 is not in the range x>=64"),
    (["label", "d.jsonl", "--out", "r", "--objective", "best"], "'best' is not one of"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
    (["models", "pull"], "Missing argument 'NAME'"),
])
def test_usage_errors_keep_clicks_exit_code(args, says):
    res = run(*args)
    assert res.exit_code == 2
    assert says in res.stderr and "Traceback" not in res.output


def test_help_and_version_exit_0():
    assert run("--help").exit_code == 0
    assert run("label", "--help").exit_code == 0
