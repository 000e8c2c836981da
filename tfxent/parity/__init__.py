"""Parity with the installed TF: the catalogue (cases), one side's run (calls), the
comparison (runner, messages, tolerance), the known differences (differences), the crash
guard (crashes) and `tfxent check` (check, report). docs/design.md maps them."""
