import pytest_asyncio

from services.executor.worker import Executor


@pytest_asyncio.fixture
async def executor(nc):
    """A factory for started executors with test timings; all are stopped at teardown."""
    started: list[Executor] = []

    async def make(queues=("default",), slots=2, handlers=None, **options) -> Executor:
        options.setdefault("executor_id", f"test-{len(started) + 1}")
        options.setdefault("fetch_timeout", 0.2)
        options.setdefault("heartbeat_interval", 0.2)
        ex = Executor(nc, list(queues), slots, handlers=handlers, **options)
        await ex.start()
        started.append(ex)
        return ex

    yield make
    for ex in started:
        await ex.stop(grace=1.0)

