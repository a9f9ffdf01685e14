"""Real negative speech for training and evaluation: where it is, how it splits, how bad files are handled.

Why a split by speaker: a head that trained on one person's ordinary speech
and is then scored on that same person's other sentences looks better than it
is. Every file gets a fold (0 or 1) from a stable hash of its speaker key
(LibriSpeech's reader id, the WUW-II caller id, the Speech Commands speaker
hash, else the file name), so the trainer takes one fold and the benchmark
scores on the other, and no speaker is on both sides.

Default folders: `$VOXLENS_WAKEWORD_NEGATIVES` (folders separated by the OS
path separator), else the real speech of `shared/eval/negatives` beside the
project checkout when it is there. A user can always point `--negatives` at
recordings of their own room.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_EVAL = Path(os.environ.get("VOXLENS_SHARED_EVAL", PROJECT_ROOT.parent / "shared" / "eval"))
# Ordinary speech (read, conversational, telephone) and isolated words by many real speakers.
DEFAULT_NEGATIVE_SETS = ("librispeech", "phone_speech", "speech_commands_words", "words_en")
MAX_FILE_S = 600.0               # longer files are read in full but only their first 10 minutes are used

_SPEAKER_PATTERNS = (
    re.compile(r"^(WUWII\d{5})_"),                    # WUW-II telephone speech: caller id
    re.compile(r"^(\d+)-\d+-\d+$"),                   # LibriSpeech: reader id
    re.compile(r"^_?[^_]*_+[^_]+_([0-9a-f]{8})_nohash"),  # Speech Commands: speaker hash
)


def speaker_key(path: str | Path) -> str:
    """The speaker a file belongs to, as far as its name tells; else the file itself."""
    stem = Path(path).name.split(".")[0]
    for pattern in _SPEAKER_PATTERNS:
        m = pattern.match(stem)
        if m:
            return m.group(1)
    return stem


def fold_of(path: str | Path) -> int:
    """0 or 1, stable across machines and Python versions (sha1 of the speaker key)."""
    return hashlib.sha1(speaker_key(path).encode()).digest()[0] & 1


def default_negative_dirs() -> list[Path]:
    env = os.environ.get("VOXLENS_WAKEWORD_NEGATIVES", "").strip()
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return [SHARED_EVAL / "negatives" / name for name in DEFAULT_NEGATIVE_SETS if (SHARED_EVAL / "negatives" / name).is_dir()]


@dataclass
class NegativeFiles:
    """Real clips that were read, and what was skipped (with the first few names, for the operator)."""
    clips: list[tuple[Path, np.ndarray]] = field(default_factory=list)
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(len(a) for _, a in self.clips) / 16000.0

    def summary(self) -> str:
        text = f"{len(self.clips)} files, {self.seconds / 60:.1f} min"
        if self.skipped:
            text += f"; skipped {self.skipped} unreadable or empty (e.g. {', '.join(self.skipped_examples)})"
        return text


def read_negative_files(folders: list[str | Path], fold: int | None = None) -> NegativeFiles:
    """Every WAV under the folders (of one fold, if given) as 16 kHz mono int16.

    Other rates, widths and channel counts are converted; unreadable, empty or
    too-short files are skipped and counted, never fatal. A folder that does not
    exist is an error naming it (a typo should not train a head on nothing).
    """
    from device.audio import AudioFormatError, read_wav

    out = NegativeFiles()
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"negative audio folder {folder} does not exist; pass a folder of WAV files with --negatives")
        for path in sorted(folder.rglob("*.wav")):
            if fold is not None and fold_of(path) != fold:
                continue
            try:
                audio = read_wav(path)
            except (AudioFormatError, OSError, ValueError, EOFError) as exc:
                logger.debug("skipping %s: %s", path, exc)
                audio = None
            if audio is None or len(audio) < 1280:
                out.skipped += 1
                if len(out.skipped_examples) < 3:
                    out.skipped_examples.append(path.name)
                continue
            out.clips.append((path, audio[: int(MAX_FILE_S * 16000)]))
    if out.skipped:
        logger.warning("negative audio: %s", out.summary())
    return out
