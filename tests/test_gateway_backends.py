"""Backend errors name the problem and the fix; retries happen on connection errors only."""
from __future__ import annotations

import pytest

from bench.llama_server import free_port
from gateway.backends.base import BackendError, ChatRequest
from gateway.backends.llama_cpp_backend import LlamaCppBackend
from gateway.backends.openai_backend import OpenAIBackend
from voxlens.config import BackendConfig
from voxlens.retry import Backoff, retry

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_missing_and_corrupt_gguf_say_what_to_do(tmp_path):
    with pytest.raises(BackendError, match="does not exist; set gateway.small.model"):
        LlamaCppBackend(BackendConfig(model=str(tmp_path / "missing.gguf")))
    with pytest.raises(BackendError, match="no model named 'nope'"):
        LlamaCppBackend(BackendConfig(model="nope"))
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(BackendError, match="may be truncated"):
        await LlamaCppBackend(BackendConfig(model=str(bad))).load()


async def test_unreachable_openai_server_is_a_retryable_error_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    backend = OpenAIBackend(BackendConfig(kind="openai", base_url=url, model="m", connect_timeout_s=0.5), "big",
                            retries=2, backoff_s=0.01)
    try:
        with pytest.raises(BackendError) as exc:
            async for _ in backend.stream(ChatRequest([{"role": "user", "content": "hi"}])):
                pass
        assert exc.value.retryable and url in str(exc.value) and "base_url" in str(exc.value)
    finally:
        await backend.close()


async def test_retry_only_on_connection_errors():
    calls = []

    async def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("refused")
        return "ok"

    fast = Backoff(initial_s=0.001)
    connection = dict(retry_on=(Exception,), retry_if=lambda e: isinstance(e, ConnectionError), backoff=fast)
    assert await retry(flaky, attempts=3, **connection) == "ok"
    assert len(calls) == 3

    async def bad_request():
        calls.append(1)
        raise ValueError("400")

    calls.clear()
    with pytest.raises(ValueError):
        await retry(bad_request, attempts=6, **connection)
    assert len(calls) == 1


async def test_openai_backend_needs_a_base_url():
    with pytest.raises(ValueError, match="base_url is empty"):
        OpenAIBackend(BackendConfig(kind="openai"), "big")
