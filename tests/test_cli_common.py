"""core/cli_common.py: the argument types, options and policy loading `airlock scan` shares with its
sub-commands read the same, word for word, on every command that uses them."""

import pytest

from airlock.core.cli import main
from airlock.core.cli_common import EXIT_USAGE


def usage_error(capsys, *argv):
    with pytest.raises(SystemExit) as stop:
        main(list(argv))
    assert stop.value.code == EXIT_USAGE
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("command", [
    ["scan", "x.pkl"], ["hash", "x.pkl"], ["lock", "x.pkl"], ["approve", "--note", "n", "x.pkl"],
    ["reject", "--note", "n", "x.pkl"],
])
def test_jobs_is_a_positive_whole_number_on_every_command(capsys, command):
    assert usage_error(capsys, *command, "--jobs", "abc") == (
        "airlock: error: argument --jobs/-j: expected a whole number of at least 1, not 'abc'")
    assert usage_error(capsys, *command, "--jobs", "0") == "airlock: error: argument --jobs/-j: must be at least 1"


@pytest.mark.parametrize("command", [["scan", "x.pkl"], ["verify", "x.pkl"], ["diff", "a", "b"]])
def test_fail_on_names_the_levels_on_every_command(capsys, command):
    assert usage_error(capsys, *command, "--fail-on", "severe") == (
        "airlock: error: argument --fail-on: unknown severity 'severe' "
        "(expected one of none, info, low, medium, high, critical)")


def test_sizes_say_how_to_spell_them(capsys):
    assert usage_error(capsys, "scan", "--max-decompressed", "1X", "x.pkl") == (
        "airlock: error: argument --max-decompressed: not a size: '1X' (examples: 512MiB, 4GiB, 2GB)")
    assert usage_error(capsys, "scan", "--max-remote-bytes", "0", "x.pkl") == (
        "airlock: error: argument --max-remote-bytes: must be at least 1 byte")


@pytest.mark.parametrize("command", [["scan"], ["verify"], ["lock"], ["approve", "--note", "n"]])
def test_a_bad_policy_file_is_refused_alike(tmp_path, capsys, command):
    target = tmp_path / "ok.pkl"
    target.write_bytes(b"\x80\x04K\x01.")
    policy = tmp_path / "airlock.toml"
    policy.write_text("no-such-key = 1\n")
    assert main([*command, "--policy", str(policy), str(target)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("airlock: ") and "no-such-key" in err and str(policy) in err
