"""Keep pooled connections in a Locust process with more than 1,024 of them: a poll()-based check.

Before it reuses a pooled socket, geventhttpclient (2.6.1, `ConnectionPool._is_socket_alive`)
asks `select.select([sock], [], [], 0.0)` whether the idle socket is readable (a FIN from the
server, or stray bytes: either way not reusable). `select()` takes file descriptors below
FD_SETSIZE (1,024) only; for a larger one it raises ValueError, which the check takes for a dead
socket. A load generator holding one keep-alive connection per agent passes 1,024 descriptors at
about a thousand agents, and from then on most agents closed their perfectly good connection and
opened a new one on every poll (benchmarks/RESULTS.md, "Load generator"): the server saw a TCP
handshake per poll that a real agent's keep-alive client would not make, and the generator paid
for it too.

The patch asks the same question with `poll()`, which has no descriptor limit: POLLIN (readable:
FIN or data) or POLLHUP/POLLERR/POLLNVAL means "do not reuse", nothing means "alive", exactly the
answers `select()` gives below 1,024. It calls the unpatched `select.poll` (gevent's monkey
patching removes it, as a blocking call): with a timeout of 0 it never blocks, so the event loop
is not held up. Applied once, at import of `loadtests.users`; if a future geventhttpclient no
longer has the method, nothing is patched (`PATCHED` is False) and the load test runs as before.
"""

from __future__ import annotations

import select
from typing import Any

_NOT_REUSABLE = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR | select.POLLNVAL


def _original_poll() -> Any:
    try:
        from gevent import monkey

        return monkey.get_original("select", "poll")
    except (ImportError, AttributeError):
        return select.poll


_poll = _original_poll()


def socket_alive(sock: Any) -> bool:
    """Whether an idle pooled socket can carry the next request: open, not readable, no error."""
    if sock is None:
        return False
    try:
        fd = sock.fileno()
        if fd < 0:
            return False
        poller = _poll()
        poller.register(fd, _NOT_REUSABLE)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


def patch_geventhttpclient() -> bool:
    """Replace geventhttpclient's select()-based check by `socket_alive`; whether it was patched."""
    try:
        from geventhttpclient.connectionpool import ConnectionPool
    except ImportError:
        return False
    global ORIGINAL_CHECK
    current = getattr(ConnectionPool, "_is_socket_alive", None)
    if not callable(current):
        return False
    if getattr(current, "__module__", "") != __name__:  # not patched twice
        ORIGINAL_CHECK = current

    def _is_socket_alive(self: Any, sock: Any) -> bool:
        return socket_alive(sock)

    ConnectionPool._is_socket_alive = _is_socket_alive  # type: ignore[method-assign]
    return True


ORIGINAL_CHECK: Any = None  # geventhttpclient's own check, kept for the tests to show the difference
PATCHED = patch_geventhttpclient()
