"""Wake a waiting consumer when a partition's high watermark file changes.

Producers in any process rewrite a partition's ``hw`` file after each durable append. On
Linux a consumer waits on inotify for that write, so it wakes within a millisecond or two and
uses no CPU while idle. Elsewhere (or if inotify is unavailable) it falls back to sleeping in
short steps, which bounds the wake-up delay by :data:`FALLBACK_STEP`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import select
import sys
import time
from pathlib import Path

log = logging.getLogger("trunkline.hub")

FALLBACK_STEP = 0.01
_IN_MODIFY = 0x00000002
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()


class Waiter:
    """Waits for any of a set of files to be modified.

    Example:
        >>> w = Waiter()
        >>> w.wait(0.0)   # nothing watched: returns at once
        False
        >>> w.close()
    """

    def __init__(self) -> None:
        self._fd = -1
        self._watches: dict[Path, int] = {}
        if _LIBC is not None:
            fd = _LIBC.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
            if fd >= 0:
                self._fd = fd
            else:
                log.debug("inotify unavailable (errno %d); polling", ctypes.get_errno())

    def watch(self, path: Path) -> None:
        """Wake on writes to ``path`` (a high watermark file)."""
        if self._fd < 0 or path in self._watches or _LIBC is None:
            return
        wd = _LIBC.inotify_add_watch(self._fd, os.fsencode(path), _IN_MODIFY)
        if wd >= 0:
            self._watches[path] = wd
        elif ctypes.get_errno() != errno.ENOENT:
            log.debug("inotify_add_watch(%s) failed: errno %d", path, ctypes.get_errno())

    def unwatch(self, path: Path) -> None:
        wd = self._watches.pop(path, None)
        if wd is not None and _LIBC is not None:
            _LIBC.inotify_rm_watch(self._fd, wd)

    def wait(self, timeout: float) -> bool:
        """Block until a watched file changes or ``timeout`` seconds pass; True if woken.

        A wake-up may be spurious; callers re-check the watermark either way.
        """
        if timeout <= 0:
            self._drain()
            return False
        if self._fd < 0 or not self._watches:
            time.sleep(min(timeout, FALLBACK_STEP))
            return True
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if ready:
            self._drain()
            return True
        return False

    def _drain(self) -> None:
        if self._fd < 0:
            return
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while os.read(self._fd, 4096):
                pass

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._watches.clear()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
