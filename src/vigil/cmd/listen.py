"""Listening sockets, bound before anything else starts.

`vigil server`/`up`/`agent` bind their addresses first and hand the bound sockets to the HTTP servers:
an address that is taken (another Vigil on this host, say) then stops start-up with one line naming
it, before a data directory is created or "listening" is claimed, instead of a server library's
traceback after both.
"""

from __future__ import annotations

import errno
import os
import socket

from vigil.model.listen import parse_listen


class ListenError(Exception):
    """An address that cannot be listened on; str() is the one line shown."""


def bind_tcp(listen: str, key: str, hint: str = "") -> socket.socket:
    """A TCP socket bound to `listen` (host:port, as `key` of vigil.yml holds it) and listening.

    Raises ListenError naming the address and `key`; when the address is taken, `hint` says how to
    choose another."""
    host, port = parse_listen(listen)
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        # SO_REUSEADDR (set by create_server): a restart may bind while old connections linger in
        # TIME_WAIT, but never beside a live listener.
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        # create_server's own text repeats the address, so the errno's plain words; a gaierror's errno
        # is an EAI_ code, its strerror the resolver's words.
        if exc.errno is not None and not isinstance(exc, socket.gaierror):
            reason = os.strerror(exc.errno).lower()
        else:
            reason = (exc.strerror or str(exc)).lower()
        taken = exc.errno == errno.EADDRINUSE
        more = f" (another Vigil on this host? {hint})" if taken and hint else ""
        raise ListenError(f"vigil: cannot listen on {listen} ({key}): {reason}{more}") from None


def address(sock: socket.socket) -> str:
    """The host:port a bound socket listens on ([v6]:port), the real port when 0 was asked for."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
