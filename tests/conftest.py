
import pytest
import pytest_asyncio

from valor import bus
from valor.natsserver import NatsCluster


@pytest.fixture
def nats_server():
    cluster = NatsCluster(size=1).start()
    yield cluster
    cluster.cleanup()


@pytest_asyncio.fixture
async def nc(nats_server):
    conn = await bus.connect(nats_server.url, name="test")
    await bus.ensure_streams(conn.jetstream(), 1)
    yield conn
    await conn.close()


@pytest_asyncio.fixture
async def js(nc):
    return nc.jetstream()
