"""Child processes that die with their parent: a `kill -9` of a parent leaves nothing running.

Linux's parent-death signal (`prctl(PR_SET_PDEATHSIG)`) has the kernel signal a process when
the thread that forked it exits, however it exits; no cleanup code of the parent has to run,
which is the point, since `kill -9` runs none. A parent opts its children in by naming itself
in the children's environment (`DIE_WITH_ENV`); a child calls `die_with_parent()` early and
arms the signal only if its parent is still the one named (a grandchild inherits the variable
but has another parent, and is left to its own parent's lifeline). Elsewhere than Linux these
are no-ops.

Users: `smsload serve` arms its granian workers (SIGKILL when the server's main process dies)
and itself when `smsload load` started it (SIGTERM: a graceful stop of its workers); Locust's
processes under `smsload load` arm SIGKILL, so a killed run is never marked complete.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

DIE_WITH_ENV = "SMSLOAD_DIE_WITH_PID"
_PR_SET_PDEATHSIG = 1


def lifeline_env(env: dict[str, str]) -> dict[str, str]:
    """`env` for a child that should die with this process."""
    return {**env, DIE_WITH_ENV: str(os.getpid())}


def arm(sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send `sig` to this process when its parent dies; whether it was armed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(sig: int = signal.SIGKILL, parent_pid: int | None = None) -> bool:
    """Arm `sig` if this process's parent is `parent_pid` (default: the pid in `DIE_WITH_ENV`).

    If the parent died before the signal was armed, the process has been re-parented and
    the signal would never come: then `sig` is sent at once."""
    if parent_pid is None:
        named = os.environ.get(DIE_WITH_ENV, "")
        if not named.isdigit():
            return False
        parent_pid = int(named)
    if os.getppid() != parent_pid:
        if not _exists(parent_pid):  # the parent died before this process could arm: orphaned
            os.kill(os.getpid(), sig)
        return False  # else a grandchild, which inherited the variable: its own parent's business
    armed = arm(sig)
    if armed and os.getppid() != parent_pid:  # the parent went between the check and prctl
        os.kill(os.getpid(), sig)
    return armed


def _exists(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, dead and not yet reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False
