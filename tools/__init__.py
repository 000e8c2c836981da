"""Maintainer tools that live beside the package, run from the repository root
(`python -m tools.matrix`); they are not installed with tfxent."""
