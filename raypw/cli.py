"""The ``raypw`` console command: ``raypw status`` and ``raypw demo``."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "named_services"]

_COLUMNS = (
    ("name", "{}"),
    ("processor", "{}"),
    ("workers", "{}"),
    ("queued", "{:,}"),
    ("running", "{:,}"),
    ("processed", "{:,}"),
    ("req/s", "{:,.0f}"),
    ("clients", "{}"),
    ("detached", "{}"),
)


def named_services(timeout: float = 10.0) -> list[dict[str, Any]]:
    """Describes every named raypw service on the Ray cluster this process is connected to.

    Returns:
        One dict per service: ``name``, ``processor``, ``detached`` and the coordinator's
        counters (``queued``, ``running``, ``processed``, ``workers``, ``workers_up``,
        ``throughput``, ``clients``, ...); ``error`` instead of counters if it did not answer.
    """
    import ray

    from raypw.service import NAMESPACE

    found = []
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["namespace"] != NAMESPACE:
            continue
        name = actor["name"]
        entry: dict[str, Any] = {"name": name}
        try:
            handle = ray.get_actor(name, namespace=NAMESPACE)
            answers: list[dict[str, Any]] = ray.get(
                [handle.info.remote(), handle.stats.remote()], timeout=timeout
            )
            info, stats = answers
            entry.update(
                processor=info.get("processor", "?"),
                detached=bool(info.get("config", {}).get("detached")),
                **stats,
            )
        except Exception as exc:  # starting, dying, or not a raypw coordinator after all
            entry["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        found.append(entry)
    return sorted(found, key=lambda entry: entry["name"])


def _table(services: list[dict[str, Any]]) -> str:
    rows = [[title for title, _ in _COLUMNS]]
    for service in services:
        if "error" in service:
            rows.append([service["name"], f"(no answer: {service['error']})"])
            continue
        values = dict(
            service,
            workers=f"{service['workers_up']}/{service['workers']}",
            **{"req/s": service["throughput"]},
        )
        rows.append([fmt.format(values[title]) for title, fmt in _COLUMNS])
    widths = [max(len(row[i]) for row in rows if len(row) > i) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        for row in rows
    )


def _status(args: argparse.Namespace) -> int:
    import ray

    address = args.address or os.environ.get("RAY_ADDRESS") or "auto"
    try:
        _check_reachable(address)
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, RuntimeError, OSError) as exc:
        print(
            f"raypw: no Ray cluster to connect to at {address!r} ({exc}); start one with "
            "'ray start --head' or 'ray up cluster.yaml', or give --address",
            file=sys.stderr,
        )
        return 2
    try:
        services = named_services()
    finally:
        ray.shutdown()
    if not services:
        print(f"no named raypw services on the cluster at {address}")
    else:
        print(_table(services))
    return 0


def _check_reachable(address: str) -> None:
    """Fails fast on a host:port nobody listens on (Ray itself retries for a minute)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", a Ray Client URL: Ray's own checks apply
    with socket.create_connection((host, int(port)), timeout=5):
        pass


def _demo(args: argparse.Namespace) -> int:
    from raypw.demo import run

    run(seconds=args.seconds, workers=args.workers, address=args.address)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``raypw`` command; returns its exit code."""
    from raypw import __version__

    parser = argparse.ArgumentParser(
        prog="raypw", description="A pool of stateful workers on Ray, with a promise per request."
    )
    parser.add_argument("--version", action="version", version=f"raypw {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser(
        "status", help="list the named raypw services on a Ray cluster, with their stats"
    )
    status.add_argument(
        "--address", help="the cluster's address (default: RAY_ADDRESS, else the local cluster)"
    )
    status.set_defaults(run=_status)
    demo = commands.add_parser("demo", help="run the quick start example (4 requests, 2 workers)")
    demo.add_argument("--seconds", type=float, default=5.0, help="time per request (default 5)")
    demo.add_argument("--workers", type=int, default=2, help="parallel workers (default 2)")
    demo.add_argument("--address", help="a Ray cluster to run on (default: a local Ray)")
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
