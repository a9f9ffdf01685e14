"""`voxlens say`, `transcribe` and `listen` end to end through the real CLI entry point."""
from __future__ import annotations

import json

import numpy as np

from device.audio import SAMPLE_RATE_HZ, write_wav
from voxlens.cli import main


def test_say_transcribe_listen(tmp_path, capsys, speak_16k):
    out = tmp_path / "said.wav"
    assert main(["say", "Turn the brightness down. Take a photo please.", "-o", str(out), "--json"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["rate_hz"] == 22050 and said["samples"] > 22050 and "tts.first_audio" in said["timings"]

    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    assert main(["transcribe", str(out), str(bad), "--json"]) == 1      # one bad file does not stop the others
    captured = capsys.readouterr()
    row = json.loads(captured.out.strip())
    assert {"brightness", "photo"} <= set(row["text"].lower().replace(".", " ").replace(",", " ").split())
    assert row["language"] == "en" and row["timings"]["stt.transcribe"] > 0 and "audio.read" in row["timings"]
    assert "notes.wav" in captured.err and "not a WAV" in captured.err

    gap = np.zeros(SAMPLE_RATE_HZ, dtype=np.int16)
    two = np.concatenate([gap, speak_16k("Set a timer for five minutes."), gap,
                          speak_16k("What time is it in Tokyo?"), gap])
    write_wav(tmp_path / "two.wav", two, SAMPLE_RATE_HZ)
    assert main(["listen", "--input", str(tmp_path / "two.wav"), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2
    assert "timer" in rows[0]["text"].lower() and "tokyo" in rows[1]["text"].lower()
    assert 0.8 < rows[0]["start_s"] < rows[0]["end_s"] < rows[1]["start_s"] < rows[1]["end_s"] < len(two) / SAMPLE_RATE_HZ
