"""One pecgateway per store: an exclusive lock on ``<store_path>.lock`` held while serving.

``run`` and ``once`` hold it for their whole life, so two instances never race on the same
outbox, mailbox and store; a second one is refused at once (``AlreadyRunning``) naming the pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from pecgateway.errors import ConfigError

__all__ = ["AlreadyRunning", "instance_lock", "lock_path"]


class AlreadyRunning(ConfigError):
    """Another pecgateway holds the store's lock (exit 2: nothing was done)."""

    def __init__(self, store_path: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"another pecgateway is already running on {store_path} ({holder}); stop it first"
        )
        self.store_path = store_path
        self.pid = pid


def lock_path(store_path: Path) -> Path:
    """``/var/lib/pecgateway/store.sqlite3`` -> ``/var/lib/pecgateway/store.sqlite3.lock``.

    Symbolic links are resolved first: two configurations naming one store through different
    links share one lock.
    """
    real = store_path.resolve()
    return real.with_name(real.name + ".lock")


@contextlib.contextmanager
def instance_lock(store_path: Path) -> Iterator[None]:
    """Holds the store's lock for the block; raises ``AlreadyRunning`` when it is taken.

    The lock is ``flock`` on an open file: the kernel releases it when the process ends, even
    after ``kill -9``, so a stale lock file never blocks a start.
    """
    path = lock_path(store_path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the lock file {path}: {exc.strerror}: the folder of store_path must "
            "exist and be writable by the user running pecgateway",
            key="store_path",
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(store_path, _holder(fd)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)


def _holder(fd: int) -> int | None:
    """The pid the lock's holder wrote, when readable."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None
