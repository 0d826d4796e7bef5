
import os

import pytest
import pytest_asyncio

from valor import bus
from valor.natsserver import DEFAULT_PORT_RANGE, NatsCluster

# Tests start their own servers and fakes: nothing from the developer's shell may
# point them at a real cluster, a real API or a real Telegram account.
for _name in ("VALOR_NATS_URL", "VALOR_CONFIG", "VALOR_SHELL_ALLOW", "VALOR_METRICS_PORT", "ANTHROPIC_API_KEY",
              "ANTHROPIC_BASE_URL", "VALOR_TG_API_ID", "VALOR_TG_API_HASH", "VALOR_TG_PHONE", "VALOR_TG_BOT_TOKEN",
              "VALOR_NATS_USER", "VALOR_NATS_PASSWORD", "VALOR_NATS_PASSWORD_FILE", "VALOR_SECRETS"):
    os.environ.pop(_name, None)
# Nor the cluster the developer's last `make up` recorded (valor/context.py): a test that wants one writes its own.
os.environ["VALOR_CONTEXT"] = "/nonexistent/valor-tests/context.json"
os.environ["VALOR_REPLICAS"] = "1"
# pytest-xdist workers (make test runs several): each takes its ports from its own slice of
# valor.natsserver's range, so two workers never start servers on the same port.
if (_worker := os.environ.get("PYTEST_XDIST_WORKER", "")).startswith("gw"):
    _lo, _hi = (int(p) for p in DEFAULT_PORT_RANGE.split("-"))
    _width = (_hi - _lo) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    _first = _lo + int(_worker[2:]) * _width
    os.environ["VALOR_PORT_RANGE"] = f"{_first}-{_first + _width}"


@pytest.fixture(autouse=True)
def run_dir(tmp_path_factory, monkeypatch):
    """Each test's own record of running task groups (services/executor/groups.py), never the checkout's."""
    path = tmp_path_factory.mktemp("run") / "tasks"
    monkeypatch.setenv("VALOR_RUN_DIR", str(path))
    return path


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
