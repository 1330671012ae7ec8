"""One trainer per run folder: an exclusive OS file lock on ``run_dir/.lock``.

The lock is an advisory ``flock`` (``msvcrt.locking`` on Windows) held for the whole
training run, so the operating system releases it when the process exits or crashes. The
file also records who holds it (pid, host, start time): a second trainer on the same
folder refuses and names the holder. A lock file left by a process that is gone (the
flock is free) is taken over, with a message naming the process that left it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

__all__ = ["RunLock", "RunFolderBusy"]

LOCK_FILE = ".lock"


class RunFolderBusy(OSError):
    """Another process is training in this run folder."""


class RunLock:
    """Context manager holding the exclusive lock of a run folder.

    >>> with RunLock("runs/toy"):        # doctest: +SKIP
    ...     trainer.fit()
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._handle = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        if not _try_lock(handle):
            holder = _read(handle)
            handle.close()
            raise RunFolderBusy(
                f"another training run holds the run folder {self.path.parent} ({_describe(holder)}); "
                "wait for it to finish, stop it, or choose another --run-dir"
            )
        previous = _read(handle)
        if previous:
            print(f"sciogen: taking over the lock of {self.path.parent} left by {_describe(previous)}, "
                  "which is no longer running", file=sys.stderr)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        handle.seek(0)
        handle.truncate()  # an empty file: released cleanly (a crash leaves the holder's record)
        handle.flush()
        _unlock(handle)
        handle.close()

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(holder: dict | None) -> str:
    if not holder:
        return "a process that left no record"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"


def _read(handle) -> dict | None:
    handle.seek(0)
    text = handle.read().strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"pid": "?", "host": "?", "started": "?"}


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(handle) -> bool:
        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(handle) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(handle) -> bool:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(handle) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
