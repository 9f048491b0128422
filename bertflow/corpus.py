"""Helpers every corpus converter shares (no task-specific code)."""
from pathlib import Path
from typing import Union

from .errors import BertflowError


def malformed_row(report, path: Union[str, Path], line_no: int, problem: str, skip_bad: bool) -> None:
    """Handle one malformed input row: raise an error naming file and line, or
    with ``skip_bad`` count it on ``report`` (``n_skipped`` += 1, the message
    appended to ``problems``) so the conversion summary says what was skipped."""
    message = f"{path}:{line_no}: {problem}"
    if not skip_bad:
        raise BertflowError(message + " (use --skip-bad to skip such rows)")
    report.n_skipped += 1
    report.problems.append("skipped " + message)
