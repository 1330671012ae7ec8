"""When to draw progress bars (on in a terminal, off in pipes, logs and CI, unless told), and the
one-line notice before long data preparation."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

__all__ = ["show_progress", "preparing"]


def show_progress(setting: bool | None = None) -> bool:
    """``setting`` when given (True / False); None: only when stderr is a terminal and ``$CI``
    is not set."""
    if setting is not None:
        return bool(setting)
    return bool(getattr(sys.stderr, "isatty", lambda: False)()) and not os.environ.get("CI")


def preparing(items: Iterable[T], total: int, what: str, *, notice_from: int = 20000) -> Iterator[T]:
    """``items`` unchanged; when there are at least ``notice_from`` of them, one stderr line
    first (``sciogen: preparing 97,000 qm9 molecules ...``) and a progress bar in a terminal,
    so a long first preparation is never silent."""
    if total < notice_from:
        yield from items
        return
    print(f"sciogen: preparing {total:,} {what} (done once per run; this can take a minute)", file=sys.stderr)
    if not show_progress(None):
        yield from items
        return
    from tqdm.auto import tqdm

    yield from tqdm(items, total=total, desc=f"preparing {what}", unit="item", mininterval=0.5, leave=False)
