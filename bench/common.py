"""What the benchmark scenarios share: the registry, SQL query counting, latency percentiles,
resident memory, and a real HTTP server (gunicorn) serving Lantern from the bench's database."""

import json
import math
import os
import resource
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS: dict[str, Callable[[bool], dict]] = {}
PROFILE_SQL = False  # --profile-sql: count_queries also prints where statements come from


def scenario(name: str):
    """Register ``function(quick) -> figures`` as the scenario ``name``."""

    def decorate(function):
        SCENARIOS[name] = function
        return function

    return decorate


@contextmanager
def count_queries() -> Iterator[dict]:
    """Count the SQL statements the default connection runs inside the block."""
    from django.db import connection

    counter = {"queries": 0}
    sources: Counter[tuple[str, str]] = Counter()

    def wrapper(execute, sql, params, many, context):
        counter["queries"] += 1
        if PROFILE_SQL:
            frames = [
                frame
                for frame in traceback.extract_stack()
                if frame.filename.startswith(str(ROOT))
                and not any(part in frame.filename for part in ("/bench/", "/.venv/"))
            ]
            where = (
                f"{Path(frames[-1].filename).relative_to(ROOT)}:{frames[-1].lineno}"
                if frames
                else "?"
            )
            sources[(where, " ".join(sql.split())[:60])] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield counter
    if PROFILE_SQL:
        print(f"-- {counter['queries']} SQL statements, by source:")
        for (where, statement), count in sources.most_common(15):
            print(f"{count:>8}  {where:<45} {statement}")


def run_concurrently(target: Callable[[int], None], count: int) -> float:
    """Run ``target(0..count-1)`` on that many threads at once; the wall time in seconds."""
    threads = [threading.Thread(target=target, args=(index,)) for index in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def percentiles(samples: list[float]) -> dict:
    """p50/p95/p99 (nearest rank) of latencies in seconds, reported in milliseconds."""
    ordered = sorted(samples)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000

    return {
        "n": len(ordered),
        "p50_ms": round(rank(50), 1),
        "p95_ms": round(rank(95), 1),
        "p99_ms": round(rank(99), 1),
    }


def peak_rss_mib() -> float:
    """This process's peak resident set size: ``VmHWM`` on Linux (a spawned child's own, where
    ``ru_maxrss`` would carry over its forked parent's), ``ru_maxrss`` elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """The bench database as a URL a child process can use (``DATABASE_URL`` or the SQLite file
    the settings fall back to)."""
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = db["USER"] or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


@contextmanager
def served(*, workers: int, threads: int, env: dict | None = None) -> Iterator[str]:
    """Lantern under gunicorn (gthread workers) on a free loopback port; yields its origin."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "portal.wsgi:application",
        f"--bind=127.0.0.1:{port}",
        f"--workers={workers}",
        f"--threads={threads}",
        "--worker-class=gthread",
        "--log-level=warning",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=environment)  # noqa: S603
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{origin}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start (exit code {process.poll()})")
            time.sleep(0.2)
        yield origin
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def target(figures: dict, label: str, measured: float, limit: float, *, at_least=False) -> None:
    """Record a target next to the figures: ``measured <= limit`` (``>=`` with ``at_least``)."""
    met = measured >= limit if at_least else measured <= limit
    figures.setdefault("targets", []).append(
        {"target": label, "measured": measured, "limit": limit, "met": met}
    )


def print_table(results: dict) -> None:
    """One row per figure: scenario, figure path, value."""
    rows = []
    targets = []
    for name, figures in results.items():
        if not isinstance(figures, dict):
            rows.append((name, json.dumps(figures)))
            continue
        for path, value in _flatten({k: v for k, v in figures.items() if k != "targets"}):
            rows.append((f"{name}: {path}", value))
        targets += [(name, item) for item in figures.get("targets", [])]
    width = max((len(label) for label, _ in rows), default=10)
    print(f"{'figure':<{width}}  value")
    print(f"{'-' * width}  -----")
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    if targets:
        print()
        print(f"{'target':<58} {'measured':>10} {'limit':>10}  met")
        for name, item in targets:
            label = f"{name}: {item['target']}"
            met = "yes" if item["met"] else "NO"
            print(f"{label:<58} {item['measured']:>10} {item['limit']:>10}  {met}")


def _flatten(value, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, json.dumps(value)


def markdown_targets(results: dict) -> str:
    """The machine and the targets table, as Markdown (for the README)."""
    machine = results.get("machine", {})
    lines = [
        f"Machine: {machine.get('cpus')} CPUs, Python {machine.get('python')}, "
        f"{machine.get('database')}, {machine.get('platform')}"
        + (" (--quick sizes)" if results.get("quick") else ""),
        "",
        "| scenario | target | measured | limit | met |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for name, figures in results.items():
        if not isinstance(figures, dict):
            continue
        for item in figures.get("targets", []):
            met = "yes" if item["met"] else "**no**"
            lines.append(
                f"| {name} | {item['target']} | {item['measured']} | {item['limit']} | {met} |"
            )
    return "\n".join(lines)
