"""Device authentication (a bearer token per device, stored hashed) and TLS / mutual TLS credentials.

Why hashes: the config file (and anyone reading it) never holds a usable token;
the gateway hashes what a device presents and compares in constant time. The
device identity for limits is derived from the token hash, so one device's
limits never touch another's.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

import grpc


class AuthError(Exception):
    """The call carries no valid token. The message never contains the token."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Authenticator:
    token_sha256: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.token_sha256)

    def device_id(self, metadata: tuple[tuple[str, str | bytes], ...] | None, peer: str = "") -> str:
        """Check the bearer token and return a stable device id; raise AuthError when auth is on and it fails."""
        md = {k.lower(): v for k, v in (metadata or ()) if isinstance(v, str)}
        claimed = md.get("voxlens-device-id", "")[:64]
        if not self.enabled:
            return claimed or peer.rsplit(":", 1)[0] or "anonymous"
        header = md.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("missing bearer token: send metadata 'authorization: Bearer <device token>'")
        digest = hash_token(token.strip())
        if not any(hmac.compare_digest(digest, known.lower()) for known in self.token_sha256):
            raise AuthError("unknown device token: add sha256(token) to gateway.token_sha256")
        return "dev-" + digest[:12]


def _read(path: str, what: str) -> bytes:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{what} {p} does not exist; fix gateway.{what} or remove it to serve without TLS")
    return p.read_bytes()


def server_credentials(cert: str, key: str, client_ca: str = "") -> grpc.ServerCredentials | None:
    """None without a certificate (plain loopback); TLS with cert+key; mutual TLS when client_ca is set too."""
    if not cert and not key:
        if client_ca:
            raise ValueError("gateway.tls_client_ca is set without tls_cert/tls_key; mutual TLS needs a server certificate")
        return None
    if not (cert and key):
        raise ValueError("TLS needs both gateway.tls_cert and gateway.tls_key")
    pair = [(_read(key, "tls_key"), _read(cert, "tls_cert"))]
    if client_ca:
        return grpc.ssl_server_credentials(pair, root_certificates=_read(client_ca, "tls_client_ca"),
                                           require_client_auth=True)
    return grpc.ssl_server_credentials(pair)
