"""TLS and mutual TLS with certificates made by the openssl command line (a real CA, server and device cert)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest

from gateway.server import start_gateway
from protos import assistant_pb2_grpc as pb_grpc
from tests.gateway_support import query
from voxlens.config import Config, replace

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=voxlens-test-ca", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "device"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", "san.cnf", cwd=d)
    return d


async def _ask(port: int, creds: grpc.ChannelCredentials) -> list:
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        async def requests():
            yield query("tls", "What is 2 plus 2?")

        return [m async for m in pb_grpc.AssistantStub(channel).Converse(requests(), timeout=10)]


async def test_mutual_tls_admits_a_device_certificate_and_refuses_a_client_without_one(certs, small_backend):
    c = Config()
    cfg = replace(c.gateway, tls_cert=str(certs / "server.crt"), tls_key=str(certs / "server.key"),
                  tls_client_ca=str(certs / "ca.crt"))
    gw = await start_gateway(cfg, c.tools, c.router, port=0, backends={"small": small_backend, "big": None})
    try:
        ca = (certs / "ca.crt").read_bytes()
        good = grpc.ssl_channel_credentials(ca, (certs / "device.key").read_bytes(), (certs / "device.crt").read_bytes())
        messages = await _ask(gw.port, good)
        assert "4" in "".join(m.delta.text for m in messages if m.WhichOneof("payload") == "delta")
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await _ask(gw.port, grpc.ssl_channel_credentials(ca))
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await gw.stop(0.5)


async def test_missing_certificate_file_names_the_setting(certs, small_backend):
    c = Config()
    cfg = replace(c.gateway, tls_cert=str(certs / "nope.crt"), tls_key=str(certs / "server.key"))
    with pytest.raises(FileNotFoundError, match="tls_cert"):
        await start_gateway(cfg, c.tools, c.router, port=0, backends={"small": small_backend, "big": None})
