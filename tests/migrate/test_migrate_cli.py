"""`tfxent migrate` on the command line: modes, exit codes, reports, file isolation."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tfxent.cli import migrate as cli

ROOT = Path(__file__).parents[2]
CORPUS = Path(__file__).parent / "migrate_corpus"
SCE = "softmax_cross_entropy_with_logits"
V1_CALL = f"import tensorflow as tf\nl = tf.nn.{SCE}(labels=y, logits=z, dim=1)\n"
V2_CALL = (
    f"import tensorflow as tf\nl = tf.nn.{SCE}(labels=tf.stop_gradient(y), logits=z, axis=1)\n"
)
KWARGS = f"import tensorflow as tf\nl = tf.nn.{SCE}(**kw)\n"
TF0_CALL = f"import tensorflow as tf\nl = tf.nn.{SCE}(logits, labels)\n"
TF0_CALL_MIGRATED = (
    f"import tensorflow as tf\nl = tf.nn.{SCE}(logits=logits, labels=tf.stop_gradient(labels))\n"
)


def migrate(*argv: str) -> tuple[int, str]:
    """Parse like the subcommand would and run; returns (exit status, stdout)."""
    parser = argparse.ArgumentParser(prog="tfxent migrate")
    cli.add_args(parser)
    out = io.StringIO()
    status = cli.run(parser.parse_args(list(argv)), stdout=out)
    return status, out.getvalue()


@pytest.fixture
def tree(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "train.py").write_text(V1_CALL)
    (tmp_path / "pkg" / "clean.py").write_text(V2_CALL)
    (tmp_path / "pkg" / ".hidden").mkdir()
    (tmp_path / "pkg" / ".hidden" / "skip.py").write_text(V1_CALL)
    return tmp_path


def test_diff_is_the_default_and_changes_nothing(tree):
    status, out = migrate("pkg")
    assert status == 0
    assert out.startswith("--- a/pkg/train.py\n+++ b/pkg/train.py\n")
    assert f"+l = tf.nn.{SCE}(labels=tf.stop_gradient(y), logits=z, axis=1)\n" in out
    assert "pkg/train.py:2:5: SAFE (safe rewrite): v1-dense-call" in out
    assert "skip.py" not in out  # hidden directories are not searched
    assert (tree / "pkg" / "train.py").read_text() == V1_CALL


def test_diff_applies_with_git_apply(tree):
    _, out = migrate("--report", "report.txt", "pkg")  # report elsewhere: stdout is the diff
    subprocess.run(["git", "apply", "-"], input=out, text=True, check=True, cwd=tree)
    assert (tree / "pkg" / "train.py").read_text() == V2_CALL


def test_write_then_check_is_clean(tree):
    assert migrate("--write", "pkg")[0] == 0
    assert (tree / "pkg" / "train.py").read_text() == V2_CALL
    status, out = migrate("--check", "pkg")
    assert status == 0
    assert out.endswith(
        "2 file(s) scanned, 0 would be rewritten, 0 failed; "
        "findings: 0 risk, 0 safe, 0 info (0 sites rewritten)\n"
    )


def test_check_fails_while_rewrites_are_pending_and_touches_nothing(tree):
    status, _ = migrate("--check", "pkg")
    assert status == 1
    assert (tree / "pkg" / "train.py").read_text() == V1_CALL


def test_check_fails_while_risky_findings_remain_even_after_write(tree):
    (tree / "pkg" / "kw.py").write_text(KWARGS)
    assert migrate("--write", "pkg")[0] == 0  # risk is reported, not a failure, outside --check
    status, out = migrate("--check", "pkg")
    assert status == 1
    assert "pkg/kw.py:2:5: RISK (semantics change possible): star-args" in out
    assert (tree / "pkg" / "kw.py").read_text() == KWARGS
    assert migrate("--check", "--pin-v1", "pkg")[0] == 1  # pinning is a pending rewrite
    migrate("--write", "--pin-v1", "pkg")
    assert migrate("--check", "pkg")[0] == 0  # tf.compat.v1 keeps v1 semantics: INFO only


def test_tf0_order_rewrites_calls_of_tf0_code_that_are_otherwise_reported(tree):
    (tree / "pkg" / "old.py").write_text(TF0_CALL)
    status, out = migrate("--check", "pkg")
    assert status == 1 and "positional-legacy-order" in out
    assert migrate("--write", "--tf0-order", "pkg")[0] == 0
    assert (tree / "pkg" / "old.py").read_text() == TF0_CALL_MIGRATED
    assert migrate("--check", "pkg")[0] == 0


def test_unparseable_file_is_left_alone_and_the_others_are_written(tree):
    bad = "print 'py2'\n" + V1_CALL
    (tree / "pkg" / "old.py").write_text(bad)
    status, out = migrate("--write", "pkg")
    assert status == 1
    assert (tree / "pkg" / "old.py").read_text() == bad
    assert (tree / "pkg" / "train.py").read_text() == V2_CALL
    assert "pkg/old.py:1:1: RISK (semantics change possible): parse-error" in out


def test_write_keeps_encoding_and_permissions(tree):
    path = tree / "pkg" / "latin.py"
    path.write_bytes(b"# -*- coding: latin-1 -*-\n# caf\xe9\n" + V1_CALL.encode())
    path.chmod(0o751)
    migrate("--write", str(path))
    assert path.read_bytes() == b"# -*- coding: latin-1 -*-\n# caf\xe9\n" + V2_CALL.encode()
    assert path.stat().st_mode & 0o777 == 0o751


def test_json_report_file(tree):
    (tree / "pkg" / "kw.py").write_text(KWARGS)
    status, out = migrate("--report", "r.json", "pkg")
    assert status == 0
    assert out.startswith("--- a/pkg/train.py")  # only the diff on stdout
    report = json.loads((tree / "r.json").read_text())
    assert report["summary"] == {
        "files": 3, "changed": 1, "failed": 0, "risk": 1, "safe": 1, "info": 0, "rewritten": 1,
    }  # fmt: skip
    by_path = {f["path"]: f for f in report["files"]}
    (finding,) = by_path["pkg/kw.py"]["findings"]
    assert finding["location"] == "pkg/kw.py:2:5"
    assert (finding["line"], finding["risk"], finding["code"]) == (2, "risk", "star-args")
    assert by_path["pkg/train.py"]["changed"] is True


def test_text_report_file_and_json_on_stdout(tree):
    migrate("--report", "r.txt", "pkg")
    assert "pkg/train.py:2:5: SAFE (safe rewrite)" in (tree / "r.txt").read_text()
    status, out = migrate("--check", "--json", "pkg")
    assert status == 1 and json.loads(out)["summary"]["changed"] == 1


def test_notebook_written_in_place(tree):
    shutil.copy(CORPUS / "notebook.ipynb", tree / "nb.ipynb")
    migrate("--write", "nb.ipynb")
    assert (tree / "nb.ipynb").read_text() == (CORPUS / "expected" / "notebook.ipynb").read_text()


def test_usage_errors_exit_2(tree, capsys):
    assert migrate("missing.py")[0] == 2
    assert "no such file or directory: missing.py" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        migrate("--write", "--check", "pkg")
    assert exc.value.code == 2


def test_help_documents_modes_report_format_and_exit_codes():
    parser = argparse.ArgumentParser(prog="tfxent migrate")
    cli.add_args(parser)
    text = parser.format_help()
    for needle in ("--diff", "--write", "--check", "--report FILE", ".json", "exit status", "RISK"):
        assert needle in text
    assert isinstance(cli.DESCRIPTION, str) and cli.DESCRIPTION


def test_python_dash_m_tfxent_migrate(tree):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "tfxent", "migrate", "--check", "pkg"],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "pkg/train.py:2:5: SAFE (safe rewrite): v1-dense-call" in run.stdout
    run = subprocess.run(
        [sys.executable, "-m", "tfxent", "migrate", "--write", "pkg"],
        capture_output=True, text=True, timeout=300, env=env, check=True,
    )  # fmt: skip
    assert "rewrote pkg/train.py" in run.stderr
    assert (tree / "pkg" / "train.py").read_text() == V2_CALL
