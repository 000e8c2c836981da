"""tfxent's bits are the same on every TF version where TF's own are (docs/exactness.md).

`compat/bits/` holds, per TF version, the fingerprints `tools/bits_across_versions.py`
recorded of tfxent's and tf.nn's results on a fixed set of inputs. Here the installed TF's
fingerprints are recomputed and must equal the recorded ones for this version, and every
pair of recorded versions must show tfxent's bits moving only where TF's move.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import tensorflow as tf

from tools import bits_across_versions as bits

RECORDS = Path(__file__).resolve().parents[2] / "compat" / "bits"


def _recorded() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(RECORDS.glob("tf*.json"))}


def _minor(version: str) -> str:
    return "tf" + ".".join(version.split(".")[:2])


def test_installed_tf_matches_its_record():
    record = _recorded().get(_minor(tf.__version__))
    if record is None or record["tensorflow"] != tf.__version__:
        pytest.skip(f"no record for TF {tf.__version__} in compat/bits (see the tool's --write)")
    now = bits.record()
    changed = sorted(k for k in record["arrays"] if now["arrays"].get(k) != record["arrays"][k])
    assert not changed, f"{len(changed)} arrays differ from the record, e.g. {changed[:5]}"
    arrays = now["arrays"]
    unlike_tf = [
        k for k in arrays if "/tfxent/" in k and arrays[k] != arrays[k.replace("/tfxent/", "/tf/")]
    ]
    assert not unlike_tf, unlike_tf


@pytest.mark.parametrize("pair", list(itertools.combinations(sorted(_recorded()), 2)))
def test_tfxent_moves_only_where_tf_moves(pair):
    records = _recorded()
    lines, ok = bits.compare(records[pair[0]], records[pair[1]])
    assert ok, "\n".join(lines)
