"""Listen addresses: `host:port` (`[::1]:9400` for IPv6) split and checked, and whether one is local.

Below the configuration because the socket receivers and the commands need the same parsing as the
schema that validates `server.listen` and its kin, without importing the whole schema.
"""

from __future__ import annotations

import ipaddress
import re

from vigil.model.show import show

__all__ = ["LISTEN_EXAMPLE", "is_loopback_listen", "parse_listen"]

_HOSTNAME_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")
LISTEN_EXAMPLE = "host:port like 127.0.0.1:9400"  # the "expected ..." of every listen error


def parse_listen(listen: str) -> tuple[str, int]:
    """Split `host:port` (`[::1]:9400` for IPv6) into host (without brackets) and port.

    Raises ValueError("expected host:port like 127.0.0.1:9400, got ...") style errors.
    """
    if not isinstance(listen, str):
        raise ValueError(f"expected {LISTEN_EXAMPLE}, got {show(listen)}")
    got = show(listen)
    if listen.startswith("["):
        host, sep, port = listen[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected {LISTEN_EXAMPLE} or [::1]:9400, got {got}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"expected an IPv6 address in [brackets], got {got}") from None
    else:
        host, sep, port = listen.rpartition(":")
        if not sep:
            raise ValueError(f"expected {LISTEN_EXAMPLE}, got {got}")
        if ":" in host:
            raise ValueError(f"expected IPv6 addresses in brackets like [::1]:9400, got {got}")
        if host == "":
            raise ValueError(f"expected {LISTEN_EXAMPLE} (0.0.0.0:9400 for all interfaces), got {got}")
        if re.fullmatch(r"[0-9.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"expected a valid IPv4 address in {LISTEN_EXAMPLE}, got {got}") from None
        elif len(host) > 253 or _HOSTNAME_RE.fullmatch(host) is None:
            raise ValueError(f"expected a valid host name or IP address in {LISTEN_EXAMPLE}, got {got}")
    # isdigit() alone would accept non-ASCII digits such as "٩".
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected a port from 1 to 65535 in {LISTEN_EXAMPLE}, got {got}")
    return host, int(port)


def is_loopback_listen(listen: str) -> bool:
    """Whether `listen` binds only to the local machine: 127.0.0.0/8, ::1 or `localhost`.

    Anything unparseable or any other host name counts as exposed, since it may resolve anywhere.
    """
    try:
        host, _ = parse_listen(listen)
    except ValueError:
        return False
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback
