"""`voxlens bench wyoming --quick`: VoxLens's and the peers' Wyoming servers, each its own process, measured
by wyoming-bench in one run. Checks that every side produced its numbers, not how fast they are
(that depends on the machine; the JSON and the table say it)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def test_the_quick_bench_measures_both_sides_of_stt_and_tts(tmp_path: Path, capsys) -> None:
    from bench.wyoming import run

    out = tmp_path / "wyoming.json"
    assert run(argparse.Namespace(quick=True, out=str(out))) == 0
    result = json.loads(out.read_text())
    assert result["clips"] == 3 and result["rounds"] == 1
    for side in ("voxlens", "peer"):
        at_once = result["stt"][side]["at_once"]
        assert at_once["ok"] == at_once["runs"] == 3 and at_once["final_ms"] > 0, at_once
        assert at_once["wer"] is not None and at_once["wer"] < 0.3, at_once   # real recordings, tiny.en: mostly right
        whole = result["tts"][side]["non_streaming"]
        assert whole["ok"] == whole["runs"] > 0 and whole["first_audio_ms"] > 0 and whole["rtf"] > 0, whole
    assert result["stt"]["voxlens"]["paced"]["ok"] == 3            # VoxLens streams transcripts
    assert result["stt"]["peer"]["paced"] is None                   # the peer does not (wyoming-bench skips it)
    assert result["tts"]["voxlens"]["streaming"]["ok"] > 0
    verdicts = result["verdicts"]
    assert verdicts["stt_final_ratio_paced"] > 0 and verdicts["tts_first_audio_ratio"]["non_streaming"] > 0
    shown = capsys.readouterr().out
    assert "ratios (voxlens / peer)" in shown and str(out) in shown
