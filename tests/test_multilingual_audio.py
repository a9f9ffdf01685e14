"""Multilingual hearing and speaking: language identification restricted to the enabled languages,
espeak-ng as the fallback voice, a voice per language, Thai and Hindi sentence and clause splitting.

The spoken input is espeak-ng speech (a voice no model here was trained on), resampled to 16 kHz.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest

from device.stt import model_for, pick_language
from device.tts import SentenceChunker, first_piece_end, segment, thai_segments
from voxlens.config import Config, SttConfig, TtsConfig, replace

DE = "Erzähl mir bitte eine kurze Geschichte über eine mutige kleine Katze."
ES = "¿Cuántos días tiene un año bisiesto y por qué existe?"


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))


# ---------------------------------------------------------------- hearing

def test_default_model_follows_the_enabled_languages():
    assert model_for("whisper-tiny.en", SttConfig()) == "whisper-tiny.en"                     # English alone: fast
    assert model_for("whisper-tiny.en", SttConfig(languages=("en", "de"))) == "whisper-base"
    assert model_for("whisper-tiny.en", SttConfig(language="fr")) == "whisper-base"
    assert model_for("/models/my-whisper", SttConfig(languages=("en", "de"))) == "/models/my-whisper"  # kept


def test_a_language_that_is_not_enabled_goes_to_the_closest_enabled_one(caplog):
    ranked = [("pt", 0.6), ("es", 0.3), ("en", 0.05), ("de", 0.05)]
    assert pick_language(ranked, ("en", "de", "es")) == ("es", 0.3)
    assert pick_language(ranked, ("pt", "en")) == ("pt", 0.6)
    assert pick_language(ranked, ()) == ("pt", 0.6)
    with caplog.at_level(logging.INFO, logger="device.stt"):
        pick_language(ranked, ("en", "de"))
    assert "'pt'" in caplog.text and "'en'" in caplog.text and "not enabled" in caplog.text


@pytest.mark.parametrize(("language", "text", "words"), [
    ("de", DE, {"geschichte", "katze"}),
    ("es", ES, {"días", "año"}),
])
def test_multilingual_whisper_identifies_and_transcribes(stt_multilingual, espeak_16k, language, text, words):
    t = stt_multilingual.transcribe(espeak_16k(language, text))
    assert t.language == language
    assert 0.0 < t.language_prob <= 1.0 and t.to_dict()["language_prob"] == round(t.language_prob, 3)
    assert words & set(t.text.lower().replace("?", " ").replace(".", " ").split()), t.text


def test_an_utterance_in_a_language_not_enabled_is_transcribed_in_an_enabled_one(stt_multilingual, espeak_16k):
    only = stt_multilingual.with_config(replace(stt_multilingual.cfg, languages=("en", "de")))
    t = only.transcribe(espeak_16k("es", ES))
    assert t.language in ("en", "de")
    assert t.detected_language == "es" and t.to_dict()["detected_language"] == "es"


def test_a_fixed_language_skips_identification(stt_multilingual, espeak_16k):
    fixed = stt_multilingual.with_config(replace(stt_multilingual.cfg, language="de"))
    t = fixed.transcribe(espeak_16k("de", DE))
    assert (t.language, t.language_prob) == ("de", 1.0)
    assert "katze" in t.text.lower()


def test_english_only_model_names_the_languages_it_cannot_hear(stt):
    other = stt.with_config(SttConfig(languages=("en", "de", "fr")))
    assert other.missing_languages() == ["de", "fr"]
    assert other.languages == ("en",)


async def test_transcribing_while_speaking_keeps_the_language(stt_multilingual, espeak_16k):
    from device.stt import StreamingTranscription

    audio = espeak_16k("de", DE)
    stream = StreamingTranscription(stt_multilingual, background=False)
    for i in range(0, len(audio), 1280):
        stream.push(audio[i:i + 1280], True)
    final = await stream.finish()
    assert final.language == "de" and "katze" in final.text.lower()


# ---------------------------------------------------------------- speaking

def test_espeak_voice_speaks_each_language():
    from device.espeak_voice import EspeakVoice

    for lang, text in (("de", "Guten Tag."), ("hi", "नमस्ते।"), ("th", "สวัสดีครับ")):
        voice = EspeakVoice(lang)
        audio = voice.synthesize(text)
        assert voice.sample_rate_hz == 22050 and audio.dtype == np.int16
        assert 0.2 < len(audio) / voice.sample_rate_hz < 3.0 and _rms(audio) > 300


def test_espeak_without_a_voice_names_the_fix():
    from device.espeak_voice import EspeakUnavailable, EspeakVoice, has_voice

    assert not has_voice("xx")
    with pytest.raises(EspeakUnavailable, match=r"\[tts\] voices"):
        EspeakVoice("xx")


def test_voice_plan_names_what_is_missing():
    from device.voices import plan

    cfg = Config(stt=SttConfig(languages=("en", "de", "xx")))
    p = plan(cfg)
    assert p.voices == {"en": "piper-joe-medium", "de": "espeak:de"}
    assert any("'de'" in m and "espeak-ng" in m and "[tts] voices" in m for m in p.messages)
    assert any("'xx'" in m and "fix" in m for m in p.messages)
    configured = plan(replace(cfg, tts=TtsConfig(voices=("de=/voices/de.onnx",))), ["de"])
    assert configured.voices == {"de": "/voices/de.onnx"} and not configured.messages


async def test_voices_switch_with_the_language(tts):
    from device.voices import Voices

    voices = Voices.load(Config(stt=SttConfig(languages=("en", "de"))), default=tts)
    assert set(voices.by_language) == {"en", "de"} and voices.by_language["de"].is_espeak
    voices.language = "de"
    before = tts.syntheses

    async def deltas():
        for word in ["Es", "ist", "fünf", "Uhr,", "und", "die", "Sonne", "scheint.", "Morgen", "regnet", "es."]:
            yield word + " "

    chunks = [c async for c in voices.stream_chunks(deltas())]
    assert tts.syntheses == before                      # Piper's English voice said nothing
    assert [c.text for c in chunks][:2] == ["Es ist fünf Uhr,", "und die Sonne scheint."]
    assert all(c.rate_hz == tts.sample_rate_hz for c in chunks) and _rms(np.concatenate([c.audio for c in chunks])) > 300
    voices.language = "en"
    assert voices.current is tts


# ---------------------------------------------------------------- Thai and Hindi splitting

def test_thai_is_cut_at_the_spaces_between_phrases():
    text = "เมืองหลวงของประเทศไทยคือกรุงเทพมหานคร เป็นเมืองที่ใหญ่ที่สุด มีประชากรประมาณ 10 ล้านคน"
    assert thai_segments(text) == ["เมืองหลวงของประเทศไทยคือกรุงเทพมหานคร ", "เป็นเมืองที่ใหญ่ที่สุด ",
                                   "มีประชากรประมาณ 10 ล้านคน"]            # never beside a number
    assert "".join(thai_segments(text)) == text
    assert thai_segments("ผมชอบ iPhone 15 มาก") == ["ผมชอบ iPhone 15 มาก"]  # nor beside a Latin word
    assert thai_segments("ดีมากๆ ครับ") == ["ดีมากๆ ครับ"]                  # nor after the repetition mark
    assert segment("th", text) == thai_segments(text)


def test_thai_answer_starts_on_its_first_phrase_while_streaming():
    chunker = SentenceChunker(language="th")
    answer = "ตอนนี้เวลาห้าโมงเย็น อากาศดีมาก พรุ่งนี้ฝนจะตก"
    pieces: list[str] = []
    first_at = None
    for i, ch in enumerate(answer):
        pieces += chunker.push(ch)
        if pieces and first_at is None:
            first_at = i
    pieces += chunker.flush()
    assert pieces == ["ตอนนี้เวลาห้าโมงเย็น", "อากาศดีมาก", "พรุ่งนี้ฝนจะตก"]
    assert first_at is not None and first_at < answer.index("อากาศดีมาก") + 1   # out before the rest was written


def test_hindi_sentences_end_at_the_danda_and_clauses_at_conjunctions():
    text = "भारत की राजधानी नई दिल्ली है और यह एक बहुत बड़ा शहर है। यहाँ बहुत लोग रहते हैं। आप कैसे हैं?"
    chunker = SentenceChunker(language="hi")
    pieces = []
    for word in text.split(" "):
        pieces += chunker.push(word + " ")
    pieces += chunker.flush()
    assert pieces == ["भारत की राजधानी नई दिल्ली है", "और यह एक बहुत बड़ा शहर है।", "यहाँ बहुत लोग रहते हैं।",
                      "आप कैसे हैं?"]
    assert first_piece_end("मैंने दो और तीन सेब खाए और फिर सो गया।", 2, 10, True, "hi") == len("मैंने दो और तीन सेब खाए")
    assert first_piece_end("नमस्ते, आप कैसे हैं?", 1, 10, True, "hi") == len("नमस्ते,")


def test_german_first_piece_uses_german_words():
    assert first_piece_end("Die Hauptstadt von Frankreich ist Paris.", 3, 10, True, "de") == len("Die Hauptstadt von Frankreich")
    assert first_piece_end("Es ist zehn vor sechs am Abend.", 3, 10, True, "de") == 0   # never "zehn | vor sechs"
    assert first_piece_end("Es ist zehn Uhr und die Sonne scheint.", 3, 10, True, "de") == len("Es ist zehn Uhr")


# ---------------------------------------------------------------- the CLI

def test_cli_say_and_transcribe_take_a_language(tmp_path, capsys):
    import json

    from voxlens.cli import main

    out = tmp_path / "de.wav"
    assert main(["say", "--language", "de", DE, "-o", str(out), "--json"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert (said["language"], said["voice"], said["rate_hz"]) == ("de", "espeak:de", 22050) and said["samples"] > 22050
    assert main(["transcribe", "--language", "de", str(out), "--json"]) == 0          # fixed: whisper-base in German
    row = json.loads(capsys.readouterr().out)
    assert (row["language"], row["language_prob"]) == ("de", 1.0) and "katze" in row["text"].lower()
    assert main(["transcribe", "--language", "auto", str(out), "--json"]) == 0        # identified
    assert json.loads(capsys.readouterr().out)["language"] == "de"
    assert main(["transcribe", "--language", "de", "--model", "whisper-tiny.en", str(out)]) == 1
    err = capsys.readouterr().err
    assert "English only" in err and "fix: --model whisper-base" in err
    assert main(["transcribe", "--language", "xx", str(out)]) == 1
    assert "does not know the language xx" in capsys.readouterr().err
    assert main(["say", "--language", "xx", "hello", "-o", str(tmp_path / "xx.wav")]) == 1
    assert "no voice for 'xx'" in capsys.readouterr().err


def test_models_list_shows_the_languages_of_each_model(capsys):
    import json

    from voxlens.cli import main

    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["whisper-tiny.en"]["languages"] == ["en"]
    assert {"de", "fr", "es", "hi", "th"} <= set(rows["whisper-base"]["languages"])
    assert {"de", "th"} <= set(rows["espeak-ng"]["languages"]) and rows["silero-vad"]["languages"] == []
    assert main(["models", "list"]) == 0
    assert "en,de,fr,it,pt,hi,es,th" in capsys.readouterr().out


async def test_prepared_lines_are_not_played_in_another_languages_turn(tts):
    from device.audio import MemorySink
    from device.voice_output import VoiceOutput
    from device.voices import Voices

    voices = Voices.load(Config(stt=SttConfig(languages=("en", "de"))), default=tts)
    out = VoiceOutput(voices, MemorySink())
    out.language = "de"                              # a German turn started before the lines were prepared
    espeak_before = voices.by_language["de"].syntheses
    await out.prepare(["Stop."])
    assert voices.by_language["de"].syntheses == espeak_before   # prepared by the English start-up voice
    out.language = "en"
    await out.speak("Stop.")
    assert out.cache_hits == 1
    out.language = "de"
    await out.speak("Stop.")                         # the German voice says it; the English cache stays out
    assert out.cache_hits == 1 and voices.spoken[-1] == ("de", "Stop.")


def test_bench_error_rate_per_language():
    from bench.speech_languages import error_rate, synthetic_clips

    assert error_rate("de", ["Was ist das?"], ["was ist das"]) == ("WER", 0.0)
    assert error_rate("en", ["It's five o'clock."], ["it is five o'clock"])[1] < 0.5
    metric, rate = error_rate("th", ["สวัสดีครับ"], ["สวัสดี ครับ"])   # Thai: characters, spaces ignored
    assert (metric, rate) == ("CER", 0.0)
    clips = synthetic_clips("fr")
    assert len(clips) == 5 and all(name.startswith("espeak-fr-") and len(audio) > 16000 for name, audio, _ in clips)


def test_start_up_names_what_a_configured_language_lacks_and_the_rest_loads(caplog):
    """An explicitly English-only Whisper with German enabled, and a language no voice has: warnings naming the
    fix; the device's models still load, German keeps its (espeak-ng) voice."""
    from device.app import load_models
    from models.catalog import resolve
    from voxlens.config import ModelsConfig

    tiny_en = str(resolve("whisper-tiny.en"))
    cfg = Config(models=ModelsConfig(stt=tiny_en), stt=SttConfig(languages=("en", "de", "xx")))
    with caplog.at_level(logging.WARNING):
        models = load_models(cfg)
    assert "hears English only" in caplog.text and "whisper-base" in caplog.text
    assert "no voice for 'xx'" in caplog.text and "[tts] voices" in caplog.text
    assert models.stt.languages == ("en",) and set(models.tts.by_language) == {"en", "de"}


def test_an_unknown_language_code_is_named_and_the_others_are_heard(stt_multilingual, espeak_16k):
    odd = stt_multilingual.with_config(SttConfig(languages=("en", "german", "es")))
    assert odd.missing_languages() == ["german"] and odd.languages == ("en", "es")
    assert odd.transcribe(espeak_16k("es", ES)).language == "es"
    fixed_odd = stt_multilingual.with_config(SttConfig(language="xx", languages=("en", "de")))
    assert fixed_odd.missing_languages() == ["xx"]
    assert fixed_odd.transcribe(espeak_16k("de", DE)).language == "de"   # identified instead of crashing
