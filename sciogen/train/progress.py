"""When to draw progress bars: on in a terminal, off in pipes, logs and CI, unless told."""

from __future__ import annotations

import os
import sys

__all__ = ["show_progress"]


def show_progress(setting: bool | None = None) -> bool:
    """``setting`` when given (True / False); None: only when stderr is a terminal and ``$CI``
    is not set."""
    if setting is not None:
        return bool(setting)
    return bool(getattr(sys.stderr, "isatty", lambda: False)()) and not os.environ.get("CI")
