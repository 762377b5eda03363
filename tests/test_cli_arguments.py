"""Bad values of --timeout and --fail-on, on the command line and in the policy file: exit 2 with a message
that says what was expected, never a traceback (regressions from the new-user trial)."""

from __future__ import annotations

import pickle

import pytest

from airlock.core.cli import main


@pytest.fixture
def model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "models" / "ok.pkl"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps([1, 2], protocol=4))
    return path


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_timeout_that_is_no_budget_is_exit_2(model, capsys, value, fmt):
    with pytest.raises(SystemExit) as stop:
        main(["scan", "--format", fmt, f"--timeout={value}", str(model)])
    out = capsys.readouterr()
    assert stop.value.code == 2 and "--timeout" in out.err and "seconds" in out.err
    assert "Traceback" not in out.err and out.out == ""


def test_fail_on_none_is_refused_not_ignored(model, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["scan", "--fail-on", "none", str(model)])
    assert stop.value.code == 2 and "expected info, low, medium, high or critical" in capsys.readouterr().err


def test_the_command_lines_fail_on_wins_over_the_policys(model, capsys):
    (model.parent.parent / "airlock.toml").write_text('fail-on = "critical"\n')
    assert main(["scan", str(model)]) == 0  # data-only is info
    assert main(["scan", "--fail-on", "info", str(model)]) == 1
    capsys.readouterr()


@pytest.mark.parametrize(("text", "key"), [("timeout = nan\n", "timeout"), ("timeout = inf\n", "timeout"),
                                           ("timeout = 0\n", "timeout"), ('fail-on = "none"\n', "fail-on")])
def test_the_policy_file_refuses_them_too(model, capsys, text, key):
    (model.parent.parent / "airlock.toml").write_text(text)
    assert main(["scan", str(model)]) == 2
    err = capsys.readouterr().err
    assert f"'{key}'" in err and "line 1" in err and "Traceback" not in err
