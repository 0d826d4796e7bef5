"""The write window: attempts' writes go out together, a lone write goes at once.

"At once" and "together" are checked by the event loop's turns, not by the
wall clock: a loaded machine may pause the test for longer than any bound.
"""

import asyncio
import time

from services.executor.coalesce import Window


def returns_without_waiting(join) -> bool:
    """Whether the coroutine finishes on its first step, never handing the loop over."""
    try:
        join.send(None)
    except StopIteration:
        return True
    join.close()
    return False


async def test_writers_in_one_window_are_released_together_when_it_closes():
    window = Window(0.05)
    turn = 0
    released: list[int] = []

    async def count_turns() -> None:
        nonlocal turn
        while True:
            await asyncio.sleep(0)
            turn += 1

    async def writer(turns: int) -> None:
        # Joining some turns later, not some milliseconds later: a loaded machine can stall
        # the loop past the window's close between two timed wake-ups, but a turn already
        # queued runs before a timer that expires meanwhile.
        for _ in range(turns):
            await asyncio.sleep(0)
        await window.join()
        released.append(turn)

    ticker = asyncio.create_task(count_turns())
    t0 = time.monotonic()
    try:
        await asyncio.gather(writer(0), writer(1), writer(2))
    finally:
        ticker.cancel()
    assert len(released) == 3 and len(set(released)) == 1  # in one turn: one socket write's worth, not three
    assert time.monotonic() - t0 >= 0.05


async def test_a_lone_writer_does_not_wait():
    assert returns_without_waiting(Window(1.0, crowd=lambda: 1).join())


async def test_a_writer_joins_an_open_window_even_when_alone_now():
    crowd = [2]
    window = Window(0.05, crowd=lambda: crowd[0])
    first = asyncio.create_task(window.join())
    await asyncio.sleep(0)
    crowd[0] = 1  # the other attempt ended; its write still waits in the window
    assert not returns_without_waiting(window.join())
    await window.join()
    assert first.done()


async def test_one_cancelled_writer_does_not_close_the_window_for_the_others():
    window = Window(0.05)
    doomed = asyncio.create_task(window.join())
    other = asyncio.create_task(window.join())
    await asyncio.sleep(0.01)
    doomed.cancel()
    await other
    assert doomed.cancelled() and not other.cancelled()


async def test_no_window_means_no_wait():
    assert returns_without_waiting(Window(0).join())
