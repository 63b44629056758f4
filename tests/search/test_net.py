"""The probe asked before MLflow's client is pointed at a tracking server: local
sockets on 127.0.0.1 that refuse, hang, answer in another protocol, or serve HTTP."""
from __future__ import annotations

import contextlib
import http.server
import socket
import threading

from hypersweep.search.net import http_silent, http_unreachable


@contextlib.contextmanager
def listening():
    """A socket that takes connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


@contextlib.contextmanager
def answering(reply: bytes):
    """A server that sends `reply` to each connection and closes it."""
    with listening_socket() as s:
        def serve() -> None:
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = s.accept()
                    with conn:
                        conn.sendall(reply)
        threading.Thread(target=serve, daemon=True).start()
        yield s.getsockname()[1]


@contextlib.contextmanager
def listening_socket():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    try:
        yield s
    finally:
        s.close()


@contextlib.contextmanager
def http_server():
    class Quiet(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:      # noqa: N802 - the handler's name
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_nothing_listening_is_refused():
    with listening() as port:
        pass                            # closed: nothing listens there now
    assert http_unreachable(f"http://127.0.0.1:{port}") == "Connection refused"


def test_a_server_that_takes_the_connection_and_sends_nothing_is_named():
    with listening() as port:
        why = http_silent("127.0.0.1", port, timeout=0.3)
    assert why == ("it takes the connection but sends nothing back within 0.3 s (a stalled "
                   "tunnel or port-forward, a server that hangs)")


def test_another_protocol_is_not_http():
    with answering(b"\x00\x00\x00\x08garbage") as port:
        assert http_unreachable(f"http://127.0.0.1:{port}") == (
            "what answers there does not speak HTTP (another service's port?)")
    with answering(b"") as port:        # closed at once, as a database's port does
        assert http_unreachable(f"http://127.0.0.1:{port}/path") == (
            "what answers there does not speak HTTP (another service's port?)")


def test_any_http_answer_will_do_and_https_to_it_is_named():
    with http_server() as port:
        assert http_unreachable(f"http://127.0.0.1:{port}") is None     # a 404 is an answer
        why = http_unreachable(f"https://127.0.0.1:{port}")
    assert why is not None and why.startswith("no TLS there (") and why.endswith(
        "): an http:// server?")


def test_other_urls_are_not_probed_as_http():
    assert http_unreachable("sqlite:///mlflow.db") is None
    assert http_unreachable("file:///tmp/mlruns") is None
    with listening() as port:           # a database's port: a TCP connection will do
        assert http_unreachable(f"postgresql://u@127.0.0.1:{port}/db") is None


def test_a_tls_server_answers_https(tmp_path):
    """A self-signed certificate: checking it is the client's business, not the probe's."""
    import datetime as dt
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    # No handler for HEAD: a 501 is an HTTP answer all the same.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert http_unreachable(f"https://127.0.0.1:{server.server_address[1]}") is None
    finally:
        server.shutdown()
        server.server_close()
