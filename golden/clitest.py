"""Helpers for the tests of the command-line entry points: a bad option must fail before the
first long step, with one ``error:`` line and exit code 2."""

import pytest

__all__ = ["Started", "refuse", "usage_error"]


class Started(Exception):
    """Raised by the first long step (patched in with :func:`refuse`): the arguments passed
    the checks."""


def refuse(*args, **kwargs):
    raise Started


def usage_error(capsys, call, message):
    """``call()`` exits with code 2 and ``error: <message>`` on stderr, no traceback; returns
    stderr."""
    with pytest.raises(SystemExit) as exc:
        call()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"error: {message}" in err and "Traceback" not in err
    return err
