"""The turn's cancel token (voxlens/cancel.py): tripped once, from any thread; everything stops on it."""
from __future__ import annotations

import asyncio
import threading

from voxlens.cancel import CancelGroup, CancelToken


async def test_a_tripped_token_is_idempotent_and_runs_its_callbacks_once() -> None:
    token, calls = CancelToken(), []
    token.on_cancel(lambda: calls.append("sink"))
    unregistered = token.on_cancel(lambda: calls.append("never"))
    unregistered()
    token.on_cancel(lambda: calls.append("wire"))
    assert not token.cancelled
    assert token.cancel() is True
    assert token.cancel() is False           # a second barge-in trips nothing again
    assert token.cancelled and calls == ["sink", "wire"]
    token.on_cancel(lambda: calls.append("late"))   # registered after the trip: runs at once
    assert calls == ["sink", "wire", "late"]
    await token.wait()                       # already tripped: returns at once


async def test_a_worker_thread_trips_it_and_the_loop_wakes() -> None:
    token = CancelToken()
    waiting = asyncio.create_task(token.wait())
    guarded = asyncio.create_task(token.guard(asyncio.Event().wait()))   # would never end on its own
    await asyncio.sleep(0)
    assert not waiting.done()
    worker = threading.Thread(target=token.cancel)
    worker.start()
    await waiting
    assert await guarded is None             # the guarded wait was dropped at the trip
    worker.join()


async def test_a_guarded_result_comes_back_when_the_token_stays_untripped() -> None:
    token = CancelToken()
    queue: asyncio.Queue[int] = asyncio.Queue()
    queue.put_nowait(7)
    assert await token.guard(queue.get()) == 7
    token.cancel()
    assert await token.guard(queue.get()) is None   # tripped: not even started


def test_a_group_stop_trips_its_calls_but_never_the_callers_token() -> None:
    group, turn = CancelGroup(), CancelToken()
    with group.scope(turn) as call:
        group.cancel_all()                   # the sink's stop(): this call stops...
        assert call.cancelled and not turn.cancelled   # ...the turn does not
    with group.scope(turn) as call:
        turn.cancel()                        # the turn's trip reaches its calls
        assert call.cancelled
