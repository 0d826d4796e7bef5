"""The simulated hosts themselves: faults cut what they say and nothing else, and nothing is left behind."""

from __future__ import annotations

import subprocess
import time

import pytest

from .hosts import NETNS_DIR, PREFIX, Network, needs_hosts, sweep_stale

pytestmark = [needs_hosts(), pytest.mark.timeout(60)]


def reaches(net: Network, a: str, b: str) -> bool:
    """A TCP connect from host a to host b's listener on port 7000 (1 s: a silent drop times out)."""
    ip = net[b].ip
    done = net[a].sh("timeout", "1", "bash", "-c", f"exec 3<>/dev/tcp/{ip}/7000", check=False)
    return done.returncode == 0


def listen(net: Network, names: list[str]) -> None:
    for name in names:
        argv = net[name].exec_argv(["python3", "-c", "import socket,time\n"
                                    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                                    f"s.bind(('{net[name].ip}', 7000)); s.listen(64)\n"
                                    "while True: s.accept()"])
        net.track(subprocess.Popen(argv))
    deadline = time.monotonic() + 10
    while not all(reaches(net, names[0], n) for n in names[1:]):
        assert time.monotonic() < deadline, "listeners did not come up"


def test_isolate_split_drop_and_heal_cut_exactly_what_they_say_and_close_leaves_nothing():
    names = ["a", "b", "c"]
    with Network(names) as net:
        listen(net, names)
        assert reaches(net, "a", "b") and reaches(net, "b", "c")

        net.isolate("a")
        assert not reaches(net, "a", "b") and not reaches(net, "c", "a")
        assert reaches(net, "b", "c")
        net.heal()
        assert reaches(net, "a", "b") and reaches(net, "c", "a")

        net.split(["a"], ["b", "c"])
        assert not reaches(net, "a", "b") and not reaches(net, "c", "a") and reaches(net, "b", "c")
        net.heal()

        net.drop_between("b", "c")
        assert not reaches(net, "b", "c") and reaches(net, "a", "b") and reaches(net, "a", "c")
        net.heal()
        assert net.faults() == {}
        assert reaches(net, "b", "c")
        run = net.run
    left = [p.name for p in NETNS_DIR.iterdir() if p.name.startswith(run)] if NETNS_DIR.exists() else []
    assert left == []


RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind((sys.argv[1], 7001))
s.settimeout(2.0)
n = 0
try:
    while True:
        s.recv(64)
        n += 1
except TimeoutError:
    print(n)
"""
SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(2000):
    s.sendto(b"x", (sys.argv[1], 7001))
    if i % 50 == 0:
        time.sleep(0.002)
"""


def test_a_lossy_link_drops_about_its_share_of_packets():
    with Network(["a", "b"]) as net:
        net.lossy("a", 0.05)
        receiver = subprocess.Popen(net["a"].exec_argv(["python3", "-c", RECEIVER, net["a"].ip]),
                                    stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        net["b"].sh("python3", "-c", SENDER, net["a"].ip)
        received = int(receiver.communicate(timeout=30)[0])
        # 2,000 datagrams through a 5 % drop: 1,900 expected, sigma ~10; no drop at all would give 2,000.
        assert 1820 <= received <= 1960, received


def test_namespaces_of_a_run_that_died_are_swept_by_the_next():
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid no process has now
    name = f"{PREFIX}-{dead.pid}-1-x"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert name in sweep_stale()
        assert not (NETNS_DIR / name).exists()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
