"""The client of the till's own local API: plain HTTP, a TLS context that verifies and trusts no CA."""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from terminal.localhttp import local_client
from tests.fixtures.hq import make_tls
from tests.fixtures.once import context_of


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


class _UnixServer(http.server.HTTPServer):
    address_family = socket.AF_UNIX

    def server_bind(self) -> None:
        self.socket.bind(self.server_address)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        conn, _ = self.socket.accept()
        return conn, ("local", 0)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A plain HTTP server on loopback and one on a Unix socket: their URL and the socket's path."""
    tcp = http.server.HTTPServer(("127.0.0.1", 0), _Ok)
    path = str(tmp_path / "api.sock")
    unix = _UnixServer(path, _Ok)  # type: ignore[arg-type]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (tcp, unix)]
    for thread in threads:
        thread.start()
    try:
        yield f"http://127.0.0.1:{tcp.server_address[1]}", path
    finally:
        for server in (tcp, unix):
            server.shutdown()
            server.server_close()


def test_the_local_client_speaks_plain_http_on_loopback_and_on_a_socket_and_trusts_no_ca(
    served: tuple[str, str],
) -> None:
    url, path = served
    for where in (None, path):
        with local_client(where) as client:
            assert client.get(f"{url}/v1/status" if where is None else "http://local/v1/status").text == "ok"
            context = context_of(client)
            assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
            assert context.cert_store_stats()["x509_ca"] == 0  # no bundle read: no TLS server would be taken either


class _Quiet(http.server.HTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the refused handshake, seen from the server's side


def test_a_tls_server_on_the_local_apis_address_is_refused_even_with_a_certificate_a_ca_signed(tmp_path: Path) -> None:
    """Something else answering TLS where the commands ask the daemon (a config's https URL, a program that took
    the port) with a certificate for 127.0.0.1 that a CA signed: the client trusts no CA, so it sends nothing."""
    ca, cert, key = make_tls(tmp_path)
    server = _Quiet(("127.0.0.1", 0), _Ok)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{server.server_address[1]}/v1/status"
    try:
        with httpx.Client(verify=ssl.create_default_context(cafile=str(ca))) as trusting:
            assert trusting.get(url, timeout=10).text == "ok"  # the server answers whoever trusts its CA
        with local_client(None) as client, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            client.get(url, timeout=10)
    finally:
        server.shutdown()
        server.server_close()
