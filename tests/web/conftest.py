"""A real Valor, its dashboard and a real headless Chromium for the web tests.

The stack (nats-server, scheduler, executor) is the CLI tests' one, on its own
loop in a background thread; the dashboard runs on that loop too, on a free
port.  One known history is written once per package:

  a (echo), b (echo) -> join (echo)    the join's graph: two parents, one dependent
  boom (fail, not retryable)           failed
  nap (sleep 60), cancelled            cancelled

Chromium is Debian's package: installed here with apt-get when missing (the
CI machine is fresh), never downloaded by a tool of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from schemas.commands import NewPromise
from tests.cli.conftest import Stack
from valor.client import ValorClient
from valor.natsserver import NatsCluster
from valor.web.live import LiveLog
from valor.web.server import Dashboard, follow

from .cdp import Chromium

CHROMIUM = "/usr/bin/chromium"
INSTALL_TIMEOUT = 1200  # seconds a test may take when it has to apt-get install chromium first


def pytest_collection_modifyitems(config, items):
    """The install counts against the first browser test's timeout: give those tests room."""
    if os.path.exists(CHROMIUM):
        return
    for item in items:
        if "chromium" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(INSTALL_TIMEOUT))


@pytest.fixture(scope="session")
def chromium_binary() -> str:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if shutil.which("apt-get") is None:
        pytest.skip(f"NO BROWSER TESTS: {CHROMIUM} is missing and there is no apt-get to install Debian's chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv, limit in ((["apt-get", "update", "-q"], 300),
                        (["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"], 900)):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=limit)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    assert os.path.exists(CHROMIUM), f"apt-get installed chromium but {CHROMIUM} is not there"
    return CHROMIUM


@pytest.fixture(scope="package")
def chromium(chromium_binary):
    browser = Chromium(chromium_binary)
    yield browser
    browser.close()


@pytest.fixture
def page(chromium):
    tab = chromium.new_page()
    yield tab
    errors = tab.errors()
    tab.close()
    assert errors == [], f"the page reported errors: {errors}"


@pytest.fixture(scope="package")
def stack():
    cluster = NatsCluster(size=1).start()
    running = Stack(cluster.url).start()
    yield running
    try:
        running.stop()
    finally:
        cluster.cleanup()


@dataclass
class Web:
    url: str
    dashboard: Dashboard
    live: LiveLog

    def get(self, path: str, timeout: float = 10.0):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as answer:
            return json.loads(answer.read())


@pytest.fixture(scope="package")
def web(stack):
    async def start():
        live = await follow(stack.nc)
        return live, await Dashboard(stack.nc, live).start("127.0.0.1", 0)

    live, dashboard = stack.call(start())
    yield Web(f"http://127.0.0.1:{dashboard.port}", dashboard, live)

    async def stop():
        await dashboard.stop()
        await live.stop()

    stack.call(stop())


@dataclass
class History:
    a: int
    b: int
    join: int
    boom: int
    nap: int

    def states(self) -> dict[int, str]:
        return {self.a: "succeeded", self.b: "succeeded", self.join: "succeeded", self.boom: "failed",
                self.nap: "cancelled"}


@pytest.fixture(scope="package")
def client(stack) -> ValorClient:
    return ValorClient(stack.nc, by="web-test")


@pytest.fixture(scope="package")
def history(stack, client) -> History:
    async def write() -> History:
        ids = await client.submit(
            NewPromise(name="a", title="left parent", type="echo", input={"side": "a"}),
            NewPromise(name="b", title="right parent", type="echo", input={"side": "b"}),
            NewPromise(name="join", title="join them", type="echo", after=["a", "b"]),
            NewPromise(name="boom", title="fails for good", type="fail", input={"retryable": False}),
            NewPromise(name="nap", title="a long nap", type="sleep", input={"seconds": 60}),
        )
        await client.cancel(ids["nap"], "the test cancels it")
        await client.wait(list(ids.values()), timeout=20)
        return History(**ids)

    return stack.call(write(), timeout=30)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    path = Path(os.environ.get("VALOR_SCREENSHOTS", "var/screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    return path
