"""The pooled-socket check past 1,024 file descriptors: geventhttpclient's select() and our poll().

Real sockets on loopback: a connection whose client end has a descriptor of 1,024 or above.
"""

from __future__ import annotations

import os
import resource
import socket
from collections.abc import Iterator

import pytest

from loadtests import pooled


@pytest.fixture
def high_fd_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(client, server) ends of a loopback TCP connection; the client's descriptor is >= 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200) if hard == resource.RLIM_INFINITY else hard, hard))
    fillers = []
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        while (fd := os.dup(0)) < 1030:  # push the next descriptors past select()'s FD_SETSIZE
            fillers.append(fd)
        os.close(fd)
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        assert client.fileno() >= 1024
        yield client, server
        client.close()
        server.close()
    finally:
        listener.close()
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_idle_connection_past_1024_is_alive_for_poll_and_dead_for_select(high_fd_pair) -> None:
    client, server = high_fd_pair
    assert pooled.PATCHED and pooled.ORIGINAL_CHECK is not None
    assert pooled.ORIGINAL_CHECK(None, client) is False  # the dependency's check: taken for dead
    assert pooled.socket_alive(client) is True


def test_a_connection_the_server_wrote_to_or_closed_is_not_reused(high_fd_pair) -> None:
    client, server = high_fd_pair
    server.sendall(b"stray")
    assert pooled.socket_alive(client) is False
    client.recv(16)
    assert pooled.socket_alive(client) is True
    server.close()  # FIN: readable
    assert pooled.socket_alive(client) is False
    client.close()
    assert pooled.socket_alive(client) is False  # fileno -1


def test_the_check_is_the_pools_check() -> None:
    from geventhttpclient.connectionpool import ConnectionPool

    assert ConnectionPool._is_socket_alive.__module__ == "loadtests.pooled"
