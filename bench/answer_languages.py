"""`voxlens bench answer-language`: does the small model answer in the question's language?

Each question of bench/multilingual_questions.toml goes to the real gateway on loopback gRPC (the
catalog's small model in process, 24 tokens, temperature 0, as the tests run it) with its language on
the Query, twice: as written (the text path), and spoken by espeak-ng then heard by whisper-base with
the languages asked for enabled (the spoken path; the language is the one Whisper identified). The
answer's language is identified by py3langid among Llama 3.1's eight languages.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import time
import tomllib

from bench.cli import write_json
from bench.speech_languages import QUESTIONS_FILE, synthetic_clips

EIGHT = ["en", "de", "fr", "it", "pt", "hi", "es", "th"]


async def ask(port: int, turn_id: str, text: str, language: str) -> str:
    """One Query on one Converse stream over loopback gRPC; the answer's text."""
    import grpc

    from protos import assistant_pb2 as pb
    from protos import assistant_pb2_grpc as pb_grpc

    query = pb.Query(turn_id=turn_id, text=text, language=language,
                     context=pb.DeviceContext(time_zone="Europe/Paris", locale=language))

    async def requests():
        yield pb.DeviceMessage(query=query)

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        parts = [m.delta.text async for m in pb_grpc.AssistantStub(channel).Converse(requests(), timeout=120)
                 if m.WhichOneof("payload") == "delta"]
    return "".join(parts)


async def _bench(languages: list[str], spoken: bool, quick: bool) -> dict:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    from device.stt import SpeechToText
    from gateway.backends.llama_cpp_backend import LlamaCppBackend
    from gateway.server import start_gateway
    from models.catalog import resolve
    from voxlens.config import BackendConfig, GatewayConfig, RouterConfig, SttConfig, ToolsConfig

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(EIGHT)
    questions = tomllib.loads(QUESTIONS_FILE.read_text(encoding="utf-8"))
    backend = LlamaCppBackend(BackendConfig(model=str(resolve("qwen2.5-coder-0.5b-q4km")), max_tokens=24,
                                            temperature=0.0, context_tokens=1024))
    await backend.load()
    gw = await start_gateway(GatewayConfig(host="127.0.0.1"), ToolsConfig(), RouterConfig(), port=0,
                             backends={"small": backend, "big": None})
    stt = SpeechToText("whisper-base", SttConfig(languages=tuple(languages))) if spoken else None
    out: dict = {}
    try:
        for lang in languages:
            asked = questions[lang][:2] if quick else questions[lang]
            paths = {"text": [(q, lang) for q in asked]}
            if stt is not None:
                heard = [stt.transcribe(audio) for _, audio, _ in synthetic_clips(lang)[:len(asked)]]
                paths["spoken"] = [(t.text, t.language) for t in heard]
            for path, items in paths.items():
                rows = []
                for i, (text, query_language) in enumerate(items):
                    answer = await ask(gw.port, f"{lang}-{path}-{i}", text, query_language)
                    answered = identifier.classify(answer)[0] if answer.strip() else ""
                    rows.append({"question": text, "query_language": query_language, "answer": answer,
                                 "answer_language": answered})
                right = sum(r["answer_language"] == lang for r in rows)
                out.setdefault(lang, {})[path] = {"right": right, "n": len(rows), "turns": rows}
    finally:
        await gw.stop(0.5)
        await backend.close()
    return out


def run(args: argparse.Namespace) -> int:
    languages = [x.strip() for x in (args.language or ",".join(EIGHT)).split(",") if x.strip()]
    t0 = time.perf_counter()
    result = asyncio.run(_bench(languages, args.spoken, args.quick))
    print(f"voxlens bench answer-language  (qwen2.5-coder-0.5b, 24 tokens, temperature 0; load avg "
          f"{os.getloadavg()[0]:.1f}; spoken = espeak-ng -> whisper-base, synthetic)")
    for lang, paths in result.items():
        cells = "   ".join(f"{path}: {r['right']}/{r['n']} answered in {lang}" for path, r in paths.items())
        print(f"  {lang}  {cells}")
    out = write_json(args.out, result)
    print(f"wrote {out} in {time.perf_counter() - t0:.0f} s")
    return 0
