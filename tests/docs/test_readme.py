"""The README's "Use it in existing code" section runs as written.

Each Python block of that section is run in a fresh interpreter (the distribution block must
configure devices before TF starts), with the custom op required, so a stale example fails
here instead of in a user's hands.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest_helpers import REPO, child_env

SECTION = "## Use it in existing code"


def _section_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


BLOCKS = _section_blocks()


def test_the_section_has_the_four_uses():
    joined = "\n".join(BLOCKS)
    for use in ("tfxent.patch()", "tfxent.nn.", "tfxent.saved_model.save", "MirroredStrategy"):
        assert use in joined, f"README's {SECTION!r} section lost its {use} example"


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(block, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", block],
        cwd=tmp_path,
        env=child_env(TFXENT_FORCE_COMPOSITE=None),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"block failed:\n{block}\nstderr:\n{done.stderr[-4000:]}"
    assert done.stdout.strip(), "every block prints its result"
