"""`python -m tfxent check`: the parity catalogue against the installed tf.nn.

For now the command lives in tfxent.parity.check; this module is its entry in the command
list.
"""

from __future__ import annotations

from tfxent.parity import check as _check

DESCRIPTION = (
    "Run the parity catalogue against the installed tf.nn and print a report\n\n"
    + _check.DESCRIPTION
)
add_args = _check.add_args
run = _check.run
