"""Small subcommands of `python -m tfxent` (`build`, `doctor`)."""
