"""Whether a server answers at all, asked before a client that retries for minutes
(Ray's, MLflow's) is pointed at it."""
from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit


def unreachable(host: str, port: int, timeout: float = 5.0) -> str | None:
    """Why nothing accepts a TCP connection at host:port (e.g. "Connection refused"),
    or None when something does."""
    try:
        socket.create_connection((host or "127.0.0.1", port), timeout=timeout).close()
    except OSError as e:
        return e.strerror or str(e) or type(e).__name__
    return None


# Default ports by URL scheme (a database URL's dialect, before any "+driver").
_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "postgres": 5432, "mysql": 3306,
          "mariadb": 3306, "mssql": 1433}


def http_unreachable(url: str) -> str | None:
    """`unreachable` for the host and port of a server's URL: an http(s) one, or a
    database's (postgresql://, mysql://, ...: MLflow retries one that refuses for
    nearly two minutes); None for any other URL (a file, a SQLite database)."""
    parts = urlsplit(url)
    port = _PORTS.get(parts.scheme.split("+", 1)[0])
    if port is None or not parts.hostname:
        return None
    try:
        port = parts.port or port
    except ValueError:          # a port that is not a number: the client will say so
        return None
    if parts.scheme in ("http", "https"):
        return http_silent(parts.hostname, port, tls=parts.scheme == "https")
    return unreachable(parts.hostname, port)


# OpenSSL's reasons when what answers a TLS handshake is not TLS (plain HTTP, mostly).
_NOT_TLS = {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNEXPECTED_RECORD", "RECORD_LAYER_FAILURE",
            "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL"}


def http_silent(host: str, port: int, tls: bool = False, timeout: float = 5.0) -> str | None:
    """Why no HTTP server answers at host:port (`tls`: over TLS, for https://), or
    None when one does, whatever its status: nothing accepts the connection; it is
    taken and nothing comes back within `timeout` (a stalled tunnel or
    port-forward, a wedged server: MLflow's client waited 20 s a try, five tries);
    what answers does not speak HTTP (a database's port) or TLS (https:// to an
    http:// server). MLflow's client retried each of these for seconds to minutes
    and then quoted urllib3."""
    other = "what answers there does not speak HTTP (another service's port?)"
    try:
        sock = socket.create_connection((host or "127.0.0.1", port), timeout=timeout)
    except OSError as e:
        return e.strerror or str(e) or type(e).__name__
    try:
        if tls:         # the certificate is the client's to check, as MLflow is configured
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname=host)
        sock.sendall(f"HEAD / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                     .encode("ascii", "replace"))
        head = sock.recv(5)
    except TimeoutError:
        return (f"it takes the connection but sends nothing back within {timeout:g} s (a "
                "stalled tunnel or port-forward, a server that hangs)")
    except ssl.SSLError as e:       # a TLS server's own refusal (a client certificate
        if e.reason not in _NOT_TLS:    # it wants) is the client's to report
            return None
        return f"no TLS there ({e.reason}): an http:// server?"
    except ConnectionError:         # reset or closed mid-request: another protocol
        return other
    except OSError as e:
        return e.strerror or str(e) or type(e).__name__
    finally:
        sock.close()
    return None if head.startswith(b"HTTP/") else other


# HTTP/2's client connection preface and an empty SETTINGS frame (RFC 9113, 3.4).
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def http2_answer(host: str, port: int, timeout: float = 5.0) -> str:
    """How the server at host:port answers a client that opens in HTTP/2, the
    protocol of gRPC, which a Ray cluster's GCS and Ray Client's server speak:
    "http2" (its first frame is its SETTINGS, type 4), "other" (another protocol:
    Ray's dashboard and job API on 8265, a web server, which would leave
    `ray.init` retrying for minutes) or "silent" (it takes the connection and
    sends nothing within `timeout`: a stalled tunnel or port-forward, a wedged
    process; `ray.init` waited on it without end)."""
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break               # closed on us: not an HTTP/2 server
                head += chunk
    except socket.timeout:
        return "silent"
    except OSError:
        return "other"              # reset by the peer, mid-handshake
    return "http2" if len(head) == 9 and head[3] == 4 else "other"
