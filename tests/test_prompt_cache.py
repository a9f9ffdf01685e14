"""The small tier's KV cache is reused across turns: a turn decodes what is new, not the whole prompt.

Counts come from llama.cpp's decode calls (KvLlama.prompt_use), never from timing.
"""
from __future__ import annotations

import uuid

import pytest

from gateway import prompts
from gateway.backends.base import ChatRequest
from tests.gateway_support import one_turn, query

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _use(backend, messages):
    """Run one generation; return how its prompt was decoded."""
    backend.stats.last_prompt = None
    async for _ in backend.stream(ChatRequest(messages, max_tokens=4, temperature=0.0)):
        pass
    assert backend.stats.last_prompt is not None
    return backend.stats.last_prompt


def _tokens(backend, text: str) -> int:
    return len(backend._load().tokenize(text.encode(), add_bos=False, special=False))


async def test_a_second_turn_with_the_same_system_prompt_decodes_only_what_follows_it(small_backend):
    system = f"Session {uuid.uuid4().hex[:8]}. {prompts.SYSTEM}"  # no prefix of it was cached before this test
    first = await _use(small_backend, prompts.chat(system, [], [{"role": "user", "content": "Name a colour."}]))
    second = await _use(small_backend, prompts.chat(system, [], [{"role": "user", "content": "Name a fruit."}]))
    system_tokens = _tokens(small_backend, system)
    assert first.evaluated >= system_tokens  # the first turn paid for the system prompt
    assert second.evaluated < first.evaluated
    assert second.reused >= system_tokens  # ...the second reused it
    assert second.evaluated <= second.prompt_tokens - system_tokens


async def test_a_conversation_resumes_from_its_kept_state_after_another_devices_turn(small_backend):
    tag = uuid.uuid4().hex[:8]
    mine = f"{prompts.SYSTEM} The user is in Lyon ({tag})."
    history = [{"role": "user", "content": "What is the capital of Italy?"}]
    answer = await _answer(small_backend, prompts.chat(mine, [], history))
    history.append({"role": "assistant", "content": answer})
    other = f"{prompts.SYSTEM} The user is in Oslo ({tag})."
    await _use(small_backend, prompts.chat(other, [], [{"role": "user", "content": "Say hi."}]))
    restores = small_backend.stats.kv_restores
    again = await _use(small_backend, prompts.chat(mine, history, [{"role": "user", "content": "And of Spain?"}]))
    assert again.restored and small_backend.stats.kv_restores == restores + 1
    kept = _tokens(small_backend, mine) + _tokens(small_backend, history[0]["content"])
    assert again.reused >= kept, again  # the system prompt and the first question came back from the kept state


async def _answer(backend, messages) -> str:
    parts = [c.text async for c in backend.stream(ChatRequest(messages, max_tokens=12, temperature=0.0))]
    return "".join(parts).strip()


@pytest.fixture(scope="module")
async def fresh_gateway(small_gguf):
    """A gateway on a freshly loaded model: nothing cached but what start-up warms."""
    from gateway.backends.llama_cpp_backend import LlamaCppBackend
    from gateway.server import start_gateway
    from voxlens.config import BackendConfig, Config

    backend = LlamaCppBackend(BackendConfig(model=str(small_gguf), max_tokens=12, temperature=0.0,
                                            context_tokens=1024))
    c = Config()
    tools = type(c.tools)(geocoding_url="http://127.0.0.1:9/search", forecast_url="http://127.0.0.1:9/forecast")
    gw = await start_gateway(c.gateway, tools, c.router, port=0, backends={"small": backend, "big": None})
    yield gw, backend
    await gw.stop(0.5)
    await backend.close()


async def test_the_gateway_warms_the_system_prompt_before_the_first_turn(fresh_gateway):
    gw, backend = fresh_gateway
    await one_turn(gw.port, query("warm-1", "Who wrote Hamlet?", conversation_id="warm"))
    use = backend.stats.last_prompt
    assert backend.stats.streams == 1 and use.reused >= _tokens(backend, prompts.SYSTEM), use


async def test_a_turn_after_tool_instructions_and_a_phrased_intent_reuses_the_conversation(fresh_gateway):
    gw, backend = fresh_gateway
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    first = await one_turn(gw.port, query("c1", "What is the capital of Peru?", conversation_id=conv))
    await one_turn(gw.port, query("c2", "What is the temperature on Mars?", conversation_id=conv))  # tool words
    await one_turn(gw.port, query("c3", "What time is it in Tokyo?", intent="time_in_city", slots={"city": "Tokyo"},
                                  conversation_id=conv))  # the model phrases the time: another prompt in the cache
    await one_turn(gw.port, query("c4", "Name a river there.", conversation_id=conv))
    use = backend.stats.last_prompt
    kept = sum(_tokens(backend, t) for t in (prompts.system_prompt("Paris", "Europe/Paris"),
                                             "What is the capital of Peru?", first.text))
    # the system message and the first exchange come back from a kept state: only the later turns are decoded
    assert use.restored and use.evaluated <= use.prompt_tokens - kept, (use, kept)


async def test_tool_instructions_come_after_the_conversation_and_add_no_system_message():
    system = prompts.system_prompt("Paris", "Europe/Paris")
    history = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello!"}]
    plain = prompts.chat(system, history, [{"role": "user", "content": "Who is Ada Lovelace?"}])
    tooled = prompts.chat(system, history, [{"role": "user", "content": "Will it rain?"}], prompts.TOOLS_IN_TEXT)
    assert tooled[:3] == plain[:3]  # the cached prefix is the same whether or not the turn needs tools
    assert [m["role"] for m in tooled] == ["system", "user", "assistant", "user"]
    assert tooled[-1]["content"] == f"{prompts.TOOLS_IN_TEXT}\n\nWill it rain?"
