"""`voxlens transcribe`, `voxlens say`, `voxlens listen`: the speech stages from the command line.

Heavy imports (models, onnxruntime) happen inside the handlers so `voxlens --help` stays fast.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import AsyncIterator

from voxlens import config as config_mod
from voxlens.timing import Timings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("transcribe", help="speech to text for WAV files")
    p.add_argument("files", nargs="+", metavar="F.wav")
    p.add_argument("--model", help="catalog name or CTranslate2 folder (default: [models] stt, or whisper-base "
                                  "for another language)")
    p.add_argument("--language", metavar="auto|xx", help="auto: identify each file's language (among [stt] languages "
                   "when several are enabled, else any); xx: transcribe in that language (default: [stt] settings)")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(func=run_transcribe)

    p = subparsers.add_parser("say", help="text to speech: play it, or write a WAV")
    p.add_argument("text", help="what to say ('-' reads standard input)")
    p.add_argument("-o", "--output", metavar="F.wav", help="write a WAV instead of playing")
    p.add_argument("--voice", help="catalog name, path to a Piper .onnx or espeak:xx (default: the language's voice)")
    p.add_argument("--language", help="the text's language, e.g. de: its voice ([tts] voices, else espeak-ng) and "
                   "sentence splitting (default: en)")
    p.add_argument("--json", action="store_true", help="print timings as JSON")
    p.set_defaults(func=run_say)

    p = subparsers.add_parser("listen", help="endpointing + a transcript of each utterance")
    p.add_argument("--input", required=True, metavar="F.wav", help="WAV file to listen to")
    p.add_argument("--realtime", action="store_true",
                   help="pace the file like a microphone and transcribe while each utterance is spoken")
    p.add_argument("--json", action="store_true", help="one JSON object per utterance")
    p.set_defaults(func=run_listen)


def _fail(message: str) -> int:
    print(f"voxlens: {message}", file=sys.stderr)
    return 1


def _stt_language(stt_cfg, language: str | None):
    """--language auto|xx over [stt]: auto identifies (among [stt] languages when several, else any language),
    xx fixes it. A malformed value is returned as the error message."""
    from voxlens.config import replace

    if not language:
        return stt_cfg
    if language == "auto":
        return replace(stt_cfg, language="", languages=stt_cfg.languages if len(stt_cfg.languages) > 1 else ())
    if not language.isalpha() or len(language) not in (2, 3):
        return f"transcribe: --language {language!r} is not auto or a language code like de; fix: --language de"
    return replace(stt_cfg, language=language.lower())


def run_transcribe(args: argparse.Namespace) -> int:
    from device.audio import AudioFormatError, read_wav
    from device.stt import SpeechToText, model_for
    from models.catalog import ModelError

    cfg = config_mod.load(args.config)
    stt_cfg = _stt_language(cfg.stt, args.language)
    if isinstance(stt_cfg, str):
        return _fail(stt_cfg)
    try:
        stt = SpeechToText(args.model or model_for(cfg.models.stt, stt_cfg), stt_cfg)
    except ModelError as exc:
        return _fail(str(exc))
    if (missing := stt.missing_languages()) and not stt.multilingual:
        return _fail(f"transcribe: {stt.name} hears English only, not {', '.join(missing)}; fix: --model whisper-base "
                     "(voxlens models prepare whisper-base)")
    if missing:
        return _fail(f"transcribe: Whisper does not know the language {', '.join(missing)}; fix: one of its codes, "
                     "e.g. --language de (or auto)")
    failed = 0
    for path in args.files:
        timings = Timings()
        try:
            with timings.measure("audio.read"):
                audio = read_wav(path)
            t = stt.transcribe(audio)
        except (AudioFormatError, ValueError) as exc:
            failed += 1
            print(f"voxlens transcribe: {exc}", file=sys.stderr)
            continue
        timings.records.extend(t.timings.records)
        if args.json:
            row = {"file": str(path), **t.to_dict(), "timings": timings.as_ms()}
            print(json.dumps(row), flush=True)
        else:
            print(f"{path}\t{t.text}", flush=True)
    return 1 if failed else 0


async def _words(text: str) -> AsyncIterator[str]:
    yield text


def run_say(args: argparse.Namespace) -> int:
    from device.audio import AudioDeviceError, SpeakerSink, WavSink
    from device.tts import TextToSpeech
    from models.catalog import ModelError

    cfg = config_mod.load(args.config)
    text = sys.stdin.read() if args.text == "-" else args.text
    if not text.strip():
        return _fail("say: nothing to say (empty text)")
    language = (args.language or "en").lower()
    voice = args.voice
    if voice is None:
        from device.voices import plan

        voices = plan(cfg, [language])
        if language not in voices.voices:
            return _fail(f"say: {voices.messages[0]}")
        voice = voices.voices[language]
    try:
        tts = TextToSpeech(voice, cfg.tts, language=language)
    except ModelError as exc:
        return _fail(str(exc))
    sink = WavSink(args.output) if args.output else SpeakerSink(cfg.audio.output_device or None)

    async def speak() -> None:
        async for chunk in tts.stream_chunks(_words(text)):
            await sink.play(chunk.audio, chunk.rate_hz)

    try:
        asyncio.run(speak())
    except (ValueError, AudioDeviceError) as exc:
        return _fail(f"say: {exc}")
    finally:
        sink.close()
    if args.json:
        print(json.dumps({"output": args.output, "samples": sink.samples_written, "rate_hz": tts.sample_rate_hz,
                          "language": language, "voice": voice,
                          "timings": tts.last_timings.as_ms()}))
    return 0


def run_listen(args: argparse.Namespace) -> int:
    from device.audio import AudioFormatError, WavSource
    from device.stt import SpeechToText, model_for
    from device.utterance import UtteranceStage, utterances
    from device import smart_turn
    from device.vad import Endpointer, SileroVad
    from models.catalog import ModelError

    cfg = config_mod.load(args.config)
    try:
        source = WavSource(args.input, realtime=args.realtime)
        stt = SpeechToText(model_for(cfg.models.stt, cfg.stt), cfg.stt)
        stage = UtteranceStage(Endpointer(cfg.vad, SileroVad(), smart_turn.from_config(cfg.vad)), stt)
    except (AudioFormatError, ModelError) as exc:
        return _fail(str(exc))

    async def main() -> int:
        n = 0
        async for u in utterances(source, stage, streaming=args.realtime):
            n += 1
            if args.json:
                print(json.dumps(u.to_dict()), flush=True)
            else:
                print(f"{u.start_s:7.2f} {u.end_s:7.2f}  {u.text}", flush=True)
        return n

    count = asyncio.run(main())
    if not count and not args.json:
        print(f"no speech found in {args.input}", file=sys.stderr)
    return 0
