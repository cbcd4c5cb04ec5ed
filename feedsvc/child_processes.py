"""What a child process of feedsvc does so that it never outlives its parent."""

from __future__ import annotations

import ctypes
import ctypes.util
import signal

_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def die_with_parent() -> None:
    """On Linux, have the kernel kill this process when its parent dies (even by SIGKILL), so that no orphan goes
    on working beside the parent's next run. Elsewhere this does nothing: each caller says how its orphan ends.

    The parent is the thread that started this process: call it from a process started by the main thread, and
    check `os.getppid()` afterwards, since the parent may have died before this call."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
