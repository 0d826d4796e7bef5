import asyncio
import os
import subprocess
import sys

import pytest

from valor import eventloop

PROBE = "import asyncio; from valor import eventloop\n" \
        "async def main(): return type(asyncio.get_running_loop()).__module__\n" \
        "print(eventloop.run(main()))"


def loop_module(**env: str) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def test_services_run_on_uvloop_by_default():
    pytest.importorskip("uvloop")
    assert loop_module(VALOR_UVLOOP="1").startswith("uvloop")


def test_uvloop_can_be_switched_off():
    assert loop_module(VALOR_UVLOOP="0").startswith("asyncio")


def test_run_returns_the_coroutines_result():
    async def answer():
        await asyncio.sleep(0)
        return 42

    assert eventloop.run(answer()) == 42
