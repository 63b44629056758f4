"""Whether a server answers at all, asked before a client that retries for minutes
(Ray's, MLflow's) is pointed at it."""
from __future__ import annotations

import socket
from urllib.parse import urlsplit


def unreachable(host: str, port: int, timeout: float = 5.0) -> str | None:
    """Why nothing accepts a TCP connection at host:port (e.g. "Connection refused"),
    or None when something does."""
    try:
        socket.create_connection((host or "127.0.0.1", port), timeout=timeout).close()
    except OSError as e:
        return e.strerror or str(e) or type(e).__name__
    return None


def http_unreachable(url: str) -> str | None:
    """`unreachable` for an http(s) URL's host and port; None for any other URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:          # a port that is not a number: the client will say so
        return None
    return unreachable(parts.hostname, port)
