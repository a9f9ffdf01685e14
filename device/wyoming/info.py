"""What each service tells a client in answer to Describe, and the handler base they share.

Why in one place: Home Assistant shows these names, languages and attributions in its
Wyoming integration, and every service answers Describe and refuses bad input the same way.
"""
from __future__ import annotations

import logging
from abc import abstractmethod
from typing import TypeVar

from wyoming.audio import AudioStop
from wyoming.error import Error
from wyoming.event import Event, Eventable
from wyoming.info import (
    AsrModel, AsrProgram, Attribution, Describe, Info, TtsProgram, TtsVoice, WakeModel, WakeProgram,
)
from wyoming.server import AsyncEventHandler

from voxlens import __version__

log = logging.getLogger(__name__)

VOXLENS = Attribution(name="VoxLens", url="https://github.com/voxlens/voxlens")
WHISPER = Attribution(name="OpenAI Whisper (CTranslate2 via faster-whisper)", url="https://github.com/SYSTRAN/faster-whisper")
PIPER = Attribution(name="Piper (Open Home Foundation)", url="https://github.com/OHF-Voice/piper1-gpl")
OPENWAKEWORD = Attribution(name="openWakeWord front end; heads trained by VoxLens", url="https://github.com/dscripka/openWakeWord")

E = TypeVar("E", bound=Eventable)


class ServiceError(ValueError):
    """A request this service cannot serve; `code` goes into the Error event, the message says what is expected."""

    def __init__(self, text: str, code: str = "bad-request") -> None:
        super().__init__(text)
        self.code = code


def parse(cls: type[E], event: Event) -> E:
    """`cls.from_event(event)`, with a malformed event refused by name instead of a KeyError deep in a handler."""
    try:
        return cls.from_event(event)  # type: ignore[return-value]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ServiceError(f"malformed {event.type!r} event ({type(exc).__name__}: {exc}); "
                           "see the Wyoming protocol for its fields", "malformed-event") from None


def stt_info(model_name: str, languages: list[str]) -> Info:
    model = AsrModel(name=model_name, attribution=WHISPER, installed=True, version=None, languages=languages,
                     description=f"{model_name}, transcribing while audio arrives")
    return Info(asr=[AsrProgram(name="voxlens-stt", attribution=VOXLENS, installed=True, version=__version__,
                                description="VoxLens speech to text: partial transcripts as the user speaks",
                                models=[model], supports_transcript_streaming=True)])


def tts_info(voice_name: str, languages: list[str]) -> Info:
    voice = TtsVoice(name=voice_name, attribution=PIPER, installed=True, version=None, languages=languages,
                     description=f"Piper voice {voice_name}")
    return Info(tts=[TtsProgram(name="voxlens-tts", attribution=VOXLENS, installed=True, version=__version__,
                                description="VoxLens text to speech: audio from the first sentence on",
                                voices=[voice], supports_synthesize_streaming=True)])


def wake_info(heads: list[tuple[str, str]], verifier: str) -> Info:
    """heads: (name, phrase) per loaded head."""
    models = [WakeModel(name=name, attribution=OPENWAKEWORD, installed=True, version=None, languages=["en"],
                        phrase=phrase, description=f"'{phrase}' (verifier: {verifier})") for name, phrase in heads]
    return Info(wake=[WakeProgram(name="voxlens-wake", attribution=VOXLENS, installed=True, version=__version__,
                                  description="VoxLens wake word: openWakeWord-format heads", models=models)])


class ServiceHandler(AsyncEventHandler):
    """Answers Describe; turns a refused request into an Error event and keeps the connection.

    A failure that is not the client's fault (a model crashing) is also said with an Error
    event, logged with its traceback, and ends this connection only.
    """

    info: Info

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(self.info.event())
            return True
        try:
            return await self.handle(event)
        except ServiceError as exc:   # the client's input, said back to it
            log.info("wyoming: refused (%s): %s", exc.code, exc)
            await self.abort_stream(refused=not AudioStop.is_type(event.type))  # after a stop, the request is over
            await self.write_event(Error(text=str(exc), code=exc.code).event())
            return True
        except (ConnectionError, OSError):
            raise   # the client went away: the server ends this session
        except Exception as exc:  # noqa: BLE001 - one session's failure is reported to it and ends it alone
            log.exception("wyoming: %s failed on %s", type(self).__name__, event.type)
            await self.abort_stream(refused=True)
            await self.write_event(Error(text=f"the service failed ({type(exc).__name__}: {exc}); see its log",
                                         code="internal").event())
            return False

    @abstractmethod
    async def handle(self, event: Event) -> bool:
        """One request event; raise ServiceError (AudioRefused is one) to refuse it."""

    async def abort_stream(self, refused: bool = False) -> None:
        """Drop the stream in progress (after a refusal or a disconnect); `refused`: drop the rest of the request."""

    async def disconnect(self) -> None:
        await self.abort_stream()
