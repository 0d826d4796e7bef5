"""The write window: attempts' writes go out together, a lone write goes at once."""

import asyncio
import time

from services.executor.coalesce import Window


async def test_writers_in_one_window_are_released_together_when_it_closes():
    window = Window(0.05)
    released: list[float] = []

    async def writer(delay: float) -> None:
        await asyncio.sleep(delay)
        await window.join()
        released.append(time.monotonic())

    t0 = time.monotonic()
    await asyncio.gather(writer(0), writer(0.01), writer(0.02))
    assert len(released) == 3
    assert max(released) - min(released) < 0.01  # one socket write's worth, not three
    assert min(released) - t0 >= 0.045


async def test_a_lone_writer_does_not_wait():
    window = Window(1.0, crowd=lambda: 1)
    t0 = time.monotonic()
    await window.join()
    assert time.monotonic() - t0 < 0.05


async def test_a_writer_joins_an_open_window_even_when_alone_now():
    crowd = [2]
    window = Window(0.05, crowd=lambda: crowd[0])
    first = asyncio.create_task(window.join())
    await asyncio.sleep(0)
    crowd[0] = 1  # the other attempt ended; its write still waits in the window
    t0 = time.monotonic()
    await window.join()
    assert first.done() and time.monotonic() - t0 >= 0.04


async def test_one_cancelled_writer_does_not_close_the_window_for_the_others():
    window = Window(0.05)
    doomed = asyncio.create_task(window.join())
    other = asyncio.create_task(window.join())
    await asyncio.sleep(0.01)
    doomed.cancel()
    await other
    assert doomed.cancelled() and not other.cancelled()


async def test_no_window_means_no_wait():
    window = Window(0)
    t0 = time.monotonic()
    await window.join()
    assert time.monotonic() - t0 < 0.01
