"""`python -m tfxent`: one list of commands, a dispatcher that imports only the command it
runs, and the exit codes 0 / 1 / 2."""

from __future__ import annotations

import argparse
import ast
import importlib
import subprocess
import sys
import textwrap

import pytest
from conftest_helpers import REPO, child_env

from tfxent import __main__ as dispatcher
from tfxent import cli


@pytest.mark.parametrize("command", cli.COMMANDS, ids=lambda c: c.name)
def test_each_command_module_has_the_interface_and_its_summary(command):
    module = importlib.import_module(command.module)
    assert module.DESCRIPTION.splitlines()[0] == command.summary
    parser = argparse.ArgumentParser()
    module.add_args(parser)
    assert callable(module.run)


def test_help_lists_every_command_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_:
        dispatcher.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(command.name in out for command in cli.COMMANDS)


def test_no_command_and_unknown_commands_are_usage_errors(capsys):
    assert dispatcher.main([]) == cli.USAGE
    with pytest.raises(SystemExit) as exit_:
        dispatcher.main(["no-such-command"])
    assert exit_.value.code == cli.USAGE


def test_an_interrupted_command_exits_2(monkeypatch, capsys):
    build = importlib.import_module("tfxent.cli.build")

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "run", interrupted)
    assert dispatcher.main(["build"]) == cli.USAGE
    assert "interrupted" in capsys.readouterr().err


# The dispatcher and the command list must not import TensorFlow or a command module they
# do not run. The package's own __init__ is bypassed (an empty package object stands in for
# it), so this checks the dispatcher itself, whatever the package imports.
DISPATCH_ONLY = textwrap.dedent(
    """
    import sys, types
    class NoTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ImportError("the dispatcher imported " + name)
    sys.meta_path.insert(0, NoTensorFlow())
    package = types.ModuleType("tfxent")
    package.__path__ = [sys.argv[1] + "/tfxent"]
    sys.modules["tfxent"] = package
    import tfxent.__main__ as m
    try:
        m.main(sys.argv[2:])
    except SystemExit as done:
        print("exit", done.code)
    print(sorted(n for n in sys.modules if n.startswith("tfxent")))
    """
)


def _dispatch_only(*argv: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", DISPATCH_ONLY, str(REPO), *argv],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


def test_help_imports_no_tensorflow_and_no_command():
    lines = _dispatch_only("--help")
    assert lines[-2:] == ["exit 0", "['tfxent', 'tfxent.__main__', 'tfxent.cli']"], lines


def test_migrate_help_imports_no_tensorflow_and_no_other_command():
    lines = _dispatch_only("migrate", "--help")
    assert lines[-2] == "exit 0"
    loaded = ast.literal_eval(lines[-1])
    assert "tfxent.cli.migrate" in loaded
    others = {c.module for c in cli.COMMANDS if c.name != "migrate"}
    assert not others & set(loaded), loaded
