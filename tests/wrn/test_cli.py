"""The command-line contract (wrn.cli): a user error is one line on stderr and exit code 2; any other
error keeps its traceback."""

from __future__ import annotations

import pytest

from wrn.cli import ArgumentParser, run_main
from wrn.errors import ConfigError, DataError, UsageError


def test_a_user_error_is_one_line_and_exit_code_2(capsys):
    def main(argv):
        raise DataError("data/cifar-10-batches-py/data_batch_1:\n  md5 does not match")

    assert run_main(main, []) == 2
    err = capsys.readouterr().err
    assert err == "error: data/cifar-10-batches-py/data_batch_1: md5 does not match\n"


def test_a_config_error_names_field_value_and_what_is_allowed(capsys):
    assert run_main(lambda argv: (_ for _ in ()).throw(ConfigError("lr", -0.1, "expected a number > 0")), []) == 2
    assert capsys.readouterr().err == "error: lr=-0.1: expected a number > 0\n"


def test_other_errors_keep_their_traceback():
    with pytest.raises(ZeroDivisionError):
        run_main(lambda argv: 1 // 0, [])


def test_the_parser_turns_usage_errors_into_one_line():
    parser = ArgumentParser(prog="python -m tool")
    parser.add_argument("--n", type=int)
    with pytest.raises(UsageError, match=r"^python -m tool: unrecognized arguments: --x \(see --help\)$"):
        parser.parse_args(["--x"])
    with pytest.raises(UsageError, match="argument --n: invalid int value: 'two'"):
        parser.parse_args(["--n", "two"])
