"""espeak-ng as the fallback voice for a language with no neural (Piper) voice on this machine.

Why espeak-ng: it speaks ~100 languages from a 10 MB library, and PyPI's `espeakng-loader`
ships libespeak-ng with its data (no system package, nothing downloaded at run time). It is
formant synthesis: intelligible, robotic. A Piper voice configured by path replaces it per
language ([tts] voices). We drive the library through ctypes in synchronous mode: `espeak_Synth`
calls our callback with each block of samples and returns when the text is spoken.

The library keeps global state (one current voice per process), so every synthesis holds one
process-wide lock; Piper's own espeak-ng (statically linked into piper.espeakbridge) is a
separate copy and is not affected.
"""
from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
ESPEAK_RATE = 1             # espeakRATE: words per minute
EE_OK = 0

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_LOCK = threading.Lock()


class EspeakUnavailable(RuntimeError):
    """libespeak-ng cannot be loaded or has no voice for a language; the message names the fix."""


@dataclass
class _Library:
    lib: ctypes.CDLL
    rate_hz: int
    callback: object          # the ctypes callback, kept alive as long as the library
    sink: list[np.ndarray]


_STATE: _Library | None = None


def _library() -> _Library:
    """Load and initialise libespeak-ng once per process."""
    global _STATE
    if _STATE is not None:
        return _STATE
    try:
        import espeakng_loader
    except ImportError:
        raise EspeakUnavailable("espeak-ng is not installed; fix: pip install -e '.[models]' (espeakng-loader)") from None
    try:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
    except OSError as exc:
        raise EspeakUnavailable(f"libespeak-ng cannot be loaded ({exc}); fix: pip install --force-reinstall "
                                "espeakng-loader") from None
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    rate_hz = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
    if rate_hz <= 0:
        raise EspeakUnavailable(f"espeak-ng did not start (code {rate_hz}); its data folder "
                                f"{espeakng_loader.get_data_path()} may be incomplete; fix: pip install "
                                "--force-reinstall espeakng-loader")
    sink: list[np.ndarray] = []

    def on_audio(wav, n: int, _events) -> int:
        if n > 0:
            sink.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0   # 0: go on

    callback = _CALLBACK(on_audio)
    lib.espeak_SetSynthCallback(callback)
    _STATE = _Library(lib, rate_hz, callback, sink)
    return _STATE


def has_voice(language: str) -> bool:
    """Whether espeak-ng can speak this language (its data has a voice by that name)."""
    try:
        state = _library()
    except EspeakUnavailable:
        return False
    with _LOCK:
        return state.lib.espeak_SetVoiceByName(language.encode()) == EE_OK


class EspeakVoice:
    """One language's espeak-ng voice with the interface the device's TTS wants: int16 mono at `sample_rate_hz`."""

    def __init__(self, language: str, words_per_minute: int = 165) -> None:
        self.state = _library()
        self.language = language
        self.words_per_minute = words_per_minute
        self.sample_rate_hz: int = self.state.rate_hz
        if not has_voice(language):
            raise EspeakUnavailable(f"espeak-ng has no voice for language {language!r}; fix: configure a Piper "
                                    f"voice for it ([tts] voices = [\"{language}=/path/to/voice.onnx\"]) or "
                                    "remove it from [stt] languages")

    def synthesize(self, text: str) -> np.ndarray:
        """The whole text as one int16 array (blocking; one synthesis per process at a time)."""
        data = text.encode("utf-8") + b"\0"
        with _LOCK:
            lib, sink = self.state.lib, self.state.sink
            sink.clear()
            if lib.espeak_SetVoiceByName(self.language.encode()) != EE_OK:
                raise EspeakUnavailable(f"espeak-ng lost its voice for {self.language!r}")
            lib.espeak_SetParameter(ESPEAK_RATE, self.words_per_minute, 0)
            err = lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
            if err != EE_OK:
                raise RuntimeError(f"espeak-ng failed to speak {text[:40]!r} (error {err})")
            audio = np.concatenate(sink) if sink else np.zeros(0, dtype=np.int16)
            sink.clear()
        return audio.astype(np.int16, copy=False)
