"""A client of the till's own local API, as its commands (``tillpoint status``, ``tap`` ...) and ``doctor`` ask it."""

from __future__ import annotations

import ssl

import httpx


def local_client(socket: str | None) -> httpx.Client:
    """The local API speaks plain HTTP, on loopback or on its Unix socket (``socket``). The client's TLS context trusts
    no CA, so it would take no TLS server either: httpx's default one reads the bundle of public CAs, 64 ms of CPU
    for every command that asks the daemon, for a TLS it never uses."""
    plain_only = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    transport = httpx.HTTPTransport(uds=socket, verify=plain_only) if socket else None
    return httpx.Client(transport=transport, verify=plain_only)
