"""Simulated hosts on this machine: Linux network namespaces on one bridge, and the faults between them.

Each ``Host`` is a network namespace with one veth link (``eth0``) to a bridge
that lives in a namespace of its own (the switch), an address in a private
10.x.y.0/24 chosen per run, and its own iptables tables.  The harness (this
process, in the root namespace) gets a link to the same bridge, so it reaches
every host as a client would — unless a fault says otherwise.

Faults are iptables rules inside the host's namespace, in a chain of our own
(``VALORNET``) jumped to from INPUT and OUTPUT, so they drop silently as a cut
cable does (no RST, no ICMP): ``isolate`` drops everything on ``eth0``,
``drop_between`` the traffic of two hosts, ``lossy`` a share of packets at
random (``-m statistic``), ``delay`` uses ``tc netem`` where the kernel has it.
Traffic a host sends to itself stays on its loopback: a service next to its
NATS node still reaches it while the host is isolated.  ``heal`` flushes them all.

Names carry this process's pid (``valornet-<pid>-<n>-<host>``), so parallel
runs never collide, and a run that died without cleaning up is swept by the
next one (its pid is gone).  ``Network.close`` kills what runs inside and
deletes the namespaces; it is registered with ``atexit`` too.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import ipaddress
import itertools
import os
import random
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PREFIX = "valornet"
NETNS_DIR = Path("/run/netns")
CHAIN = "VALORNET"
CLONE_NEWNET = 0x40000000
_counter = itertools.count(1)


class Unavailable(RuntimeError):
    """This machine cannot make namespaces (not root, no ``ip``, no iptables): the reason says which."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done


@functools.cache
def unavailable() -> str | None:
    """Why namespaces cannot be used here, or None when they can (probed by making one, once per process)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if not shutil.which(tool):
            return f"`{tool}` is not installed (make tools installs iptables)"
    name = f"{PREFIX}-{os.getpid()}-probe"
    try:
        done = _run("ip", "netns", "add", name, check=False)
        if done.returncode != 0:
            return f"`ip netns add` is not allowed here: {done.stderr.strip()}"
        done = _run("ip", "netns", "exec", name, "iptables", "-w", "-L", "INPUT", check=False)
        if done.returncode != 0:
            return f"iptables does not work inside a namespace: {done.stderr.strip()}"
    finally:
        _run("ip", "netns", "del", name, check=False)
    return None


def needs_hosts():
    """The pytest mark of a test that makes simulated hosts: skipped, saying why, where it cannot."""
    return pytest.mark.skipif(unavailable() is not None, reason=f"simulated hosts unavailable: {unavailable()}")


def netem_available() -> bool:
    """Whether the kernel has the netem qdisc (some VMs' kernels do not: delay then cannot be made)."""
    name = f"{PREFIX}-{os.getpid()}-netem"
    try:
        _run("ip", "netns", "add", name)
        done = _run("ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
                    check=False)
        return done.returncode == 0
    finally:
        _run("ip", "netns", "del", name, check=False)


def sweep_stale() -> list[str]:
    """Delete the namespaces of runs whose process is gone (killed -9 before it could clean up)."""
    swept = []
    if not NETNS_DIR.exists():
        return swept
    for path in NETNS_DIR.iterdir():
        parts = path.name.split("-")
        if len(parts) < 3 or parts[0] != PREFIX or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        _kill_inside(path.name)
        _run("ip", "netns", "del", path.name, check=False)
        swept.append(path.name)
    return swept


def _kill_inside(ns: str) -> None:
    done = _run("ip", "netns", "pids", ns, check=False)
    for pid in done.stdout.split():
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass


def _free_subnet(rng: random.Random) -> ipaddress.IPv4Network:
    """A /24 in 10.0.0.0/8 that no address of the root namespace is in (parallel runs pick different ones)."""
    used = _run("ip", "-4", "-o", "addr", "show").stdout
    taken = [ipaddress.ip_interface(w) for line in used.splitlines() for w in line.split() if "/" in w and w[0].isdigit()]
    for _ in range(1000):
        net = ipaddress.ip_network(f"10.{rng.randint(160, 250)}.{rng.randint(0, 255)}.0/24")
        if not any(t.ip in net or net.overlaps(t.network) for t in taken):
            return net
    raise RuntimeError("no free 10.x.y.0/24 for the simulated hosts")


@dataclass
class Host:
    """One simulated machine: a namespace, an address, its own firewall."""

    name: str
    ns: str
    ip: str
    rules: list[list[str]] = field(default_factory=list)  # what is in its VALORNET chain now
    netem: bool = False

    def exec_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this host (``ip netns exec`` execs it: the pid stays the program's)."""
        return ["ip", "netns", "exec", self.ns, *argv]

    def sh(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run("ip", "netns", "exec", self.ns, *argv, check=check)

    def thread(self, target, *args) -> threading.Thread:
        """A daemon thread that runs ``target(*args)`` inside this host (setns is per thread): it reaches the
        host's loopback, e.g. a service's /healthz bound to 127.0.0.1 there, whatever the faults on its link."""
        def enter_then_run() -> None:
            with open(NETNS_DIR / self.ns) as ns:
                if ctypes.CDLL(None, use_errno=True).setns(ns.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {self.ns}")
            target(*args)

        t = threading.Thread(target=enter_then_run, daemon=True, name=f"in-{self.name}")
        t.start()
        return t

    def _add(self, rule: list[str]) -> None:
        self.sh("iptables", "-w", "-A", CHAIN, *rule)
        self.rules.append(rule)

    def clear(self) -> None:
        self.sh("iptables", "-w", "-F", CHAIN)
        self.rules.clear()
        if self.netem:
            self.sh("tc", "qdisc", "del", "dev", "eth0", "root", check=False)
            self.netem = False

    def setup(self) -> None:
        self.sh("ip", "link", "set", "lo", "up")
        self.sh("ip", "addr", "add", f"{self.ip}/24", "dev", "eth0")
        self.sh("ip", "link", "set", "eth0", "up")
        self.sh("iptables", "-w", "-N", CHAIN)
        self.sh("iptables", "-w", "-I", "INPUT", "-j", CHAIN)
        self.sh("iptables", "-w", "-I", "OUTPUT", "-j", CHAIN)


@dataclass
class Network:
    """Hosts on one bridge; ``close()`` (or exit) removes everything this made."""

    names: list[str]
    seed: int | None = None
    hosts: dict[str, Host] = field(default_factory=dict)
    run: str = ""
    switch: str = ""
    harness_ip: str = ""
    subnet: ipaddress.IPv4Network | None = None
    _procs: list[subprocess.Popen] = field(default_factory=list)
    _closed: bool = False

    def __post_init__(self) -> None:
        reason = unavailable()
        if reason:
            raise Unavailable(reason)
        sweep_stale()
        n = next(_counter)
        self.run = f"{PREFIX}-{os.getpid()}-{n}"
        self.subnet = _free_subnet(random.Random(self.seed))
        addrs = list(self.subnet.hosts())
        self.switch = f"{self.run}-sw"
        atexit.register(self.close)
        try:
            _run("ip", "netns", "add", self.switch)
            sw = ["ip", "netns", "exec", self.switch]
            _run(*sw, "ip", "link", "add", "br0", "type", "bridge")
            _run(*sw, "ip", "link", "set", "br0", "up")
            # The harness's own link: root-namespace side named for the run (interface names are <= 15 chars).
            root_if = f"vn{os.getpid()}x{n % 1000}"[:15]
            _run("ip", "link", "add", root_if, "type", "veth", "peer", "name", "harness", "netns", self.switch)
            self.harness_ip = str(addrs[-1])
            _run("ip", "addr", "add", f"{self.harness_ip}/24", "dev", root_if)
            _run("ip", "link", "set", root_if, "up")
            _run(*sw, "ip", "link", "set", "harness", "master", "br0", "up")
            for i, name in enumerate(self.names):
                host = self.hosts[name] = Host(name, f"{self.run}-{name}", str(addrs[i]))  # close() finds it
                _run("ip", "netns", "add", host.ns)
                _run("ip", "link", "add", "eth0", "netns", host.ns, "type", "veth", "peer", "name", f"p{i}",
                     "netns", self.switch)
                _run(*sw, "ip", "link", "set", f"p{i}", "master", "br0", "up")
                host.setup()
        except BaseException:
            self.close()
            raise

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- faults --------------------------------------------------------------------

    def isolate(self, *names: str) -> None:
        """Each named host loses every link (to the others, to the harness): packets vanish silently."""
        for name in names:
            h = self.hosts[name]
            h._add(["-i", "eth0", "-j", "DROP"])
            h._add(["-o", "eth0", "-j", "DROP"])

    def drop_between(self, a: str, b: str) -> None:
        """Nothing passes between hosts a and b (both directions); each still reaches everyone else."""
        for x, y in ((a, b), (b, a)):
            hx, hy = self.hosts[x], self.hosts[y]
            hx._add(["-s", hy.ip, "-j", "DROP"])
            hx._add(["-d", hy.ip, "-j", "DROP"])

    def split(self, side_a: list[str], side_b: list[str]) -> None:
        """Two sides that cannot reach each other (the harness still reaches both: an operator's view)."""
        for a in side_a:
            for b in side_b:
                self.drop_between(a, b)

    def lossy(self, name: str, share: float = 0.05) -> None:
        """The host's link drops ``share`` of packets each way at random (iptables' statistic match)."""
        h = self.hosts[name]
        for way in ("-i", "-o"):
            h._add([way, "eth0", "-m", "statistic", "--mode", "random", "--probability", f"{share}", "-j", "DROP"])

    def delay(self, name: str, ms: int, loss: float = 0.0) -> None:
        """``tc netem`` on the host's link (raises where the kernel has no netem)."""
        h = self.hosts[name]
        extra = ["loss", f"{loss * 100:g}%"] if loss else []
        h.sh("tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", f"{ms}ms", *extra)
        h.netem = True

    def heal(self) -> None:
        for h in self.hosts.values():
            h.clear()

    def faults(self) -> dict[str, int]:
        return {name: len(h.rules) for name, h in self.hosts.items() if h.rules or h.netem}

    # --- processes -----------------------------------------------------------------------

    def track(self, proc: subprocess.Popen) -> subprocess.Popen:
        """A process started in a host, killed on close if still running."""
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for p in self._procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for h in self.hosts.values():
            _kill_inside(h.ns)
            _run("ip", "netns", "del", h.ns, check=False)
        if self.switch:
            _run("ip", "netns", "del", self.switch, check=False)  # takes the bridge and the harness's link with it
