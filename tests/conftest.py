"""Shared test set-up: quiet TF logs, and the custom op built once per session.

With TFXENT_REQUIRE_OP=1 (CI, tox) a build failure fails every test instead of letting the
suite pass on the composite fallback.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from tfxent import _backend  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def custom_op() -> object:
    library = _backend.op_library()
    if os.environ.get("TFXENT_REQUIRE_OP") == "1":
        assert library is not None, "TFXENT_REQUIRE_OP=1 but the custom op is unavailable"
    return library
