"""A real two-node Ray cluster on this machine, on loopback only, with token auth.

``ray start --head`` and ``ray start --address=...`` run as separate processes, one after the
other. Every node keeps to 127.0.0.1 (shared/DESIGN.md section 5). ``stop()`` ends only the
processes of this cluster, found by its own temp dir, never with a blanket ``ray stop``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LoopbackCluster:
    """Head and worker node started with ``ray start``, stopped by pid."""

    def __init__(self, cpus_per_node: int = 2) -> None:
        # Short: Ray's unix socket paths live under it and must stay under ~100 chars.
        self.temp_dir = tempfile.mkdtemp(prefix="rpw", dir="/tmp")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.cpus = cpus_per_node
        root = str(Path(__file__).resolve().parents[2])
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
            "PYTHONPATH": root,  # the workers import the tests' and examples' processors
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
        }

    def _ray_start(self, args: list[str], env: dict[str, str]) -> None:
        # Output to a file, not a pipe: the daemons it spawns would hold a pipe open.
        with tempfile.TemporaryFile("w+") as output:
            code = subprocess.run(
                [RAY, "start", *args, "--disable-usage-stats", "--node-ip-address=127.0.0.1"],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=180,
            ).returncode
            output.seek(0)
            if code != 0:
                raise RuntimeError(f"ray start {args[0]} failed:\n{output.read()[-3000:]}")

    def start(self) -> LoopbackCluster:
        try:
            self._ray_start(
                [
                    "--head",
                    f"--port={self.port}",
                    f"--num-cpus={self.cpus}",
                    f"--temp-dir={self.temp_dir}",
                    "--include-dashboard=false",
                    '--resources={"head": 1}',
                ],
                self.env,
            )
            # The second node joins the way `ray start --address` would, kept on loopback
            # (see tests/cluster/join_node.py for why not `ray start` itself).
            root = self.env["PYTHONPATH"]
            with tempfile.TemporaryFile("w+") as output:
                code = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "tests.cluster.join_node",
                        self.address,
                        str(self.cpus),
                        '{"second": 1}',
                    ],
                    env=self.env,
                    cwd=root,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=180,
                ).returncode
                output.seek(0)
                if code != 0:
                    raise RuntimeError(f"joining the second node failed:\n{output.read()[-3000:]}")
        except BaseException:
            self.stop()
            raise
        return self

    def pids(self) -> list[int]:
        """Processes of this cluster: their command lines name its temp dir or its port."""
        marks = (self.temp_dir.encode(), f"127.0.0.1:{self.port}".encode())
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    text = cmdline.read()
            except OSError:
                continue
            if any(mark in text for mark in marks) and b"pytest" not in text:
                found.append(int(entry))
        return found

    def listening_addresses(self) -> set[str]:
        """Local addresses this cluster's processes listen on (TCP)."""
        inodes = set()
        for pid in self.pids():
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
            except OSError:
                continue
        addresses = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as lines:
                for line in list(lines)[1:]:
                    fields = line.split()
                    if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                        addresses.add(_decode(fields[1]))
        return addresses

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            pids = self.pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.1)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _decode(hex_address: str) -> str:
    host, port = hex_address.split(":")
    if len(host) == 32 and host.startswith("0000000000000000FFFF0000"):
        host = host[24:]  # an IPv4 address mapped into IPv6
    if len(host) == 8:
        ip = ".".join(str(int(host[i : i + 2], 16)) for i in (6, 4, 2, 0))
    else:
        ip = "[" + host + "]"
    return f"{ip}:{int(port, 16)}"
