"""A real multi-node Ray cluster on this machine, for tests: `ray start --block` processes on 127.0.0.2 (head) and
127.0.0.3, ... (one per node), each with its own ports and its own --temp-dir, in its own process group.

Teardown never uses `ray stop` (it kills every Ray process on the machine by name, including the pytest session's
own instance): it SIGTERMs the `ray start --block` processes it started (which stop their node's processes on exit)
and then SIGKILLs whatever is left in their process groups.

Auth: token auth stays ON (Ray 2.60's default). The cluster gets a fresh random token passed as RAY_AUTH_TOKEN with
RAY_AUTH_MODE=token to every node and every client (`env()`), so it never touches ~/.ray/auth_token.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_ports(n: int, host: str = "127.0.0.1", exclude: range = range(0)) -> list[int]:
    """n distinct free ports, none in `exclude` (Ray refuses a node whose ports fall in its worker port range)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
            p = s.getsockname()[1]
            if p not in ports and p not in exclude and p not in _TAKEN:
                ports.append(p)
        _TAKEN.update(ports)
    finally:
        for s in socks:
            s.close()
    return ports


_TAKEN: set[int] = set()  # ports handed out in this process (a stopped node's ports may still look free)


def _port_range(width: int = 40) -> tuple[int, int]:
    """A run of `width` consecutive free ports for a node's workers: between Ray's default worker ports
    (10002-19999, used by other Ray instances on this machine) and the kernel's ephemeral range (from 32768)."""
    rng = random.Random()
    for _ in range(500):
        start = rng.randrange(20000, 32000 - width)
        if any(p in _TAKEN for p in range(start, start + width)):
            continue
        ok = True
        for p in range(start, start + width):
            with socket.socket() as s:
                try:
                    s.bind(("0.0.0.0", p))
                except OSError:
                    ok = False
                    break
        if ok:
            _TAKEN.update(range(start, start + width))
            return start, start + width - 1
    raise RuntimeError("no free port range")


@dataclass
class LocalRayCluster:
    num_cpus: int = 4
    object_store_bytes: int = 200 << 20
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    procs: list[subprocess.Popen] = field(default_factory=list)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="shk", dir="/tmp")))
    address: str = ""
    logs: list[Path] = field(default_factory=list)
    entrypoint: str | None = None  # start nodes with deploy/entrypoint.sh head|worker instead of `ray start`

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        # the venv's `ray` and `shark` first, as when the venv is activated
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "RAY_USAGE_STATS_ENABLED": "0",
                    "OMP_WAIT_POLICY": "PASSIVE", **extra})
        return env

    def node_ports(self, tag: str) -> list[str]:
        """`ray start` options giving one more node on this machine its own free ports and temp dir."""
        lo, hi = _port_range()
        nm, om, rtenv, metrics, agent_listen, agent_grpc = free_ports(6, exclude=range(lo, hi + 1))
        return [f"--node-manager-port={nm}", f"--object-manager-port={om}", f"--min-worker-port={lo}",
                f"--max-worker-port={hi}", f"--runtime-env-agent-port={rtenv}", f"--metrics-export-port={metrics}",
                f"--dashboard-agent-listen-port={agent_listen}", f"--dashboard-agent-grpc-port={agent_grpc}",
                f"--temp-dir={self.root / tag}"]

    def _start(self, ip: str, head: bool, resources: str | None = None) -> None:
        n = len(self.procs)
        ports = self.node_ports(tag=f"n{n}")
        gcs, client, dash = free_ports(3)
        if head:
            self.address = f"{ip}:{gcs}"
        extra_env: dict[str, str] = {}
        if self.entrypoint:  # the container's command, given this machine's ports through its environment
            cmd = [self.entrypoint, "head" if head else "worker", *ports]
            extra_env = {"RAY_NODE_IP": ip, "RAY_NUM_CPUS": str(self.num_cpus),
                         "RAY_OBJECT_STORE_BYTES": str(self.object_store_bytes), "RAY_PORT": str(gcs),
                         "RAY_CLIENT_PORT": str(client), "RAY_DASHBOARD_PORT": str(dash), "RAY_ADDRESS": self.address, **(
                             {"RAY_RESOURCES": resources} if resources else {})}
            if head:
                cmd.append("--include-dashboard=false")  # no dashboard deps here (the image has ray[default])
        else:
            cmd = ["ray", "start", "--block", f"--node-ip-address={ip}", f"--num-cpus={self.num_cpus}",
                   f"--object-store-memory={self.object_store_bytes}", "--disable-usage-stats", *ports]
            if resources:
                cmd.append(f"--resources={resources}")
            if head:
                cmd += ["--head", f"--port={gcs}", f"--ray-client-server-port={client}",
                        "--include-dashboard=false"]
            else:
                cmd.append(f"--address={self.address}")
        log = self.root / f"node{n}.log"
        self.logs.append(log)
        with open(log, "wb") as fh:
            self.procs.append(subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=self.env(**extra_env),
                                               start_new_session=True))

    def start(self, ips: tuple[str, ...] = ("127.0.0.2", "127.0.0.3"), timeout_s: float = 90.0,
              resources: dict[str, str] | None = None) -> LocalRayCluster:
        """Head on ips[0], one more node per further ip; resources: {ip: '{"ps": 4}'} custom resources of a node."""
        resources = resources or {}
        self._start(ips[0], head=True, resources=resources.get(ips[0]))
        self._wait_nodes(1, timeout_s)
        for ip in ips[1:]:
            self._start(ip, head=False, resources=resources.get(ip))
        self._wait_nodes(len(ips), timeout_s)
        return self

    def _wait_nodes(self, n: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for p, log in zip(self.procs, self.logs):
                if p.poll() is not None:
                    raise RuntimeError(f"ray start exited {p.returncode}: {log.read_text()[-3000:]}")
            res = subprocess.run(["ray", "status", f"--address={self.address}"], env=self.env(),
                                 capture_output=True, text=True, timeout=60)
            alive = res.stdout.count("node_") if res.returncode == 0 else 0
            if alive >= n:
                return
            time.sleep(1.0)
        raise RuntimeError(f"{n} Ray nodes not up within {timeout_s} s: " + " | ".join(
            log.read_text()[-1500:] for log in self.logs))

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in reversed(self.procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:  # whatever is left in the node's own process group
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            p.wait(timeout=5) if p.poll() is None else None
        self.procs = []
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
