"""One stage shape for the streaming parts: push inputs, end the input, `async for` the results, `aclose`.

Why: the audio path grew four shapes (per-frame `process() -> list`, push/poll/`finish()`, a text stream
in and audio out, `AsyncIterator`s closed with `aclose`), each with its own end and its own stop. This is
LiveKit Agents' shape (`push_frame`/`push_text`, `end_input`, `async for`, `aclose`); a part that already
streams `AsyncIterable[In] -> AsyncIterator[Out]` (the TTS stream, the utterance stage's `utterances`)
becomes a Stage through `StreamStage`, without being rewritten. Stopping is the turn's cancel token
(voxlens/cancel.py), handed to the part when the stage is made.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from typing import Generic, Protocol, TypeVar, runtime_checkable

In = TypeVar("In")
Out = TypeVar("Out")
In_contra = TypeVar("In_contra", contravariant=True)
Out_co = TypeVar("Out_co", covariant=True)


@runtime_checkable
class Stage(Protocol[In_contra, Out_co]):
    """Inputs pushed in (frames, text deltas), results iterated out until the input has ended and drained."""

    def push(self, item: In_contra) -> None: ...
    def end_input(self) -> None: ...
    def __aiter__(self) -> AsyncIterator[Out_co]: ...
    async def aclose(self) -> None: ...


_END = object()


class StreamStage(Generic[In, Out]):
    """A Stage over a streaming function: `run(inputs)` reads what is pushed and yields the results."""

    def __init__(self, run: Callable[[AsyncIterable[In]], AsyncGenerator[Out, None]]) -> None:
        self._inputs: asyncio.Queue[object] = asyncio.Queue()
        self._ended = False
        self._results = run(self._read())

    async def _read(self) -> AsyncIterator[In]:
        while (item := await self._inputs.get()) is not _END:
            yield item   # type: ignore[misc]

    def push(self, item: In) -> None:
        if self._ended:
            raise RuntimeError("push() after end_input(): this stage's input has ended; make a new stage")
        self._inputs.put_nowait(item)

    def end_input(self) -> None:
        """No more input: the results end once what was pushed has been processed."""
        if not self._ended:
            self._ended = True
            self._inputs.put_nowait(_END)

    def __aiter__(self) -> AsyncIterator[Out]:
        return self._results

    async def aclose(self) -> None:
        """Stop now: the part's own clean-up runs (its worker is cancelled), pending input is dropped."""
        self.end_input()
        await self._results.aclose()
