"""Only what pyproject.toml cannot say: a tree with prebuilt op libraries is a platform wheel.

`./dev wheel` (tools/wheel.py) stages one library per TF minor in tfxent/_prebuilt/ before
building; their presence makes the wheel platform-specific (cp311-cp311-linux_x86_64, then
manylinux after auditwheel). Without them (the sdist, a source checkout) the wheel is pure
and the op is compiled on first use.
"""

from pathlib import Path

from setuptools import setup
from setuptools.dist import Distribution

_PREBUILT = Path(__file__).parent / "tfxent" / "_prebuilt"


class _Distribution(Distribution):
    def has_ext_modules(self) -> bool:
        return any(_PREBUILT.glob("tf*/*.so"))


setup(distclass=_Distribution)
