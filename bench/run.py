#!/usr/bin/env python
"""Lantern's benchmarks: ``python bench/run.py [--quick] [--only NAME ...]``.

Prints one table and writes the figures to ``bench/results/latest.json``. Not part of the test
suite; run it against the database in ``DATABASE_URL`` (SQLite by default).
"""

import argparse
import json
import logging
import math
import multiprocessing
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django  # noqa: E402

django.setup()

from catalog.models import Entity  # noqa: E402
from integrations.choices import Operator  # noqa: E402
from integrations.engine.correlation import CorrelationIndex, Rule  # noqa: E402

SCENARIOS: dict[str, Callable[[bool], dict]] = {}


def scenario(name: str):
    def decorate(function):
        SCENARIOS[name] = function
        return function

    return decorate


def _entities(count: int) -> list[Entity]:
    entities = []
    for index in range(count):
        entity = Entity(
            pk=index + 1,
            kind="Component",
            namespace="default",
            name=f"service-{index:06d}",
            description=f"Service number {index} of team {index % 97}",
            tags=[f"team-{index % 97}", "java" if index % 2 else "python"],
            annotations={"bitbucket.org/repo-url": f"https://bitbucket.org/acme/repo-{index:06d}"},
            spec={"type": "service", "lifecycle": "production", "owner": f"team-{index % 97}"},
            etag="x",
        )
        entities.append(entity)
    return entities


@scenario("correlation")
def correlation(quick: bool) -> dict:
    """Matching discovered records against catalog entities through the per-run index."""
    records, entity_count = (1_000, 10_000) if quick else (10_000, 100_000)
    entities = _entities(entity_count)
    data = [
        {"name": f"service-{index * 7 % entity_count:06d}", "slug": f"repo-{index:06d}"}
        for index in range(records)
    ]
    figures = {"records": records, "entities": entity_count}
    for operator, rule in (
        ("equals", Rule("name", "metadata.name", Operator.EQUALS)),
        (
            "contains",
            Rule("slug", 'metadata.annotations."bitbucket.org/repo-url"', Operator.CONTAINS),
        ),
    ):
        tracemalloc.start()
        started = time.perf_counter()
        index = CorrelationIndex([rule], entities)
        built = time.perf_counter()
        matched = sum(1 for record in data if len(index.match(record)) == 1)
        finished = time.perf_counter()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        figures[operator] = {
            "index_build_s": round(built - started, 3),
            "match_s": round(finished - built, 3),
            "matched": matched,
            "peak_mib": round(peak / 2**20, 1),
        }
    return figures


# -- Bitbucket Cloud sync against the sandbox -----------------------------------------------------

BENCH_TOKEN = "bench-token"  # noqa: S105 (a sandbox credential)
BENCH_NAME = "bench-bitbucket-cloud"


def _sandbox_process(conn, repos: int, prs: int, commits: int) -> None:
    """The sandbox in its own process (so its CPU and memory are not the sync's): generate the
    world, report what the minimum request count needs, then answer commands until ``stop``."""
    from integrations.sandbox import READ_SCOPES, SandboxServer, World

    world = World.generate(1, repos=repos, projects=3, prs_per_repo=prs, commits_per_repo=commits)
    world.credentials.add_access_token(BENCH_TOKEN, workspace="acme", scopes=READ_SCOPES)
    listed = sorted(world.iter_repositories(), key=lambda r: (r.created_on, r.uuid))
    facts = [
        (
            bool(r.mainbranch),
            len(r.pull_requests),
            len(r.history(r.branches[r.mainbranch])) if r.mainbranch else 0,
        )
        for r in listed
    ]
    server = SandboxServer(world, kind="cloud").start()
    server.api.rate_limits.configure(limits={})  # the bench measures throughput, not limits
    conn.send({"url": server.api_url, "facts": facts})
    while True:
        command = conn.recv()
        if command == "stop":
            server.stop()
            conn.send("stopped")
            return
        entries = [e for e in server.api.log.entries() if e.path.startswith("/2.0/")]
        if command == "count":
            conn.send(len(entries))
        elif command == "replay":  # the successful GETs, to fetch again with a bare client
            conn.send([(e.path, e.query) for e in entries if e.status in (200, 404)])
        elif command == "reset":
            server.api.log.reset()
            conn.send("ok")


def _minimum_requests(facts: list[tuple[bool, int, int]]) -> dict:
    """The fewest requests a first sync can make under the engine's caps: the listing pages, one
    page per repository and kind (the first sync takes at most 50 items, one page) until the
    per-run cap is spent, and the catalog-info.yaml reads the per-run cap allows."""
    from integrations.engine.secondary import FIRST_SYNC_LIMIT, RUN_CAP
    from integrations.engine.sync import CATALOG_FILE_READS_PER_RUN
    from integrations.providers.bitbucket_cloud.client import REPOSITORIES_PAGELEN

    listing = math.ceil(len(facts) / REPOSITORIES_PAGELEN)
    secondary = 0
    for kind in (1, 2):  # pull requests, commits
        left = RUN_CAP
        for has_main, *counts in facts:
            if left <= 0:
                break
            if not has_main:
                continue  # an empty repository has neither (the listing says so)
            items = min(FIRST_SYNC_LIMIT, counts[kind - 1], left)
            secondary += 1
            left -= items
    files = min(CATALOG_FILE_READS_PER_RUN, sum(1 for has_main, *_ in facts if has_main))
    return {"listing": listing, "secondary": secondary, "catalog_files": files}


@contextmanager
def _count_queries():
    from django.db import connection

    counter = {"queries": 0}

    def wrapper(execute, sql, params, many, context):
        counter["queries"] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield counter


def _bench_cleanup() -> None:
    from integrations import services
    from integrations.choices import ImportAction
    from integrations.models import Connector, ImportedEntity, Integration

    for integration in Integration.objects.filter(name=BENCH_NAME):
        registered = list(
            ImportedEntity.objects.filter(
                integration=integration, action=ImportAction.REGISTER
            ).values_list("entity_id", flat=True)
        )
        services.integration_delete(integration=integration)
        for start in range(0, len(registered), 500):
            Entity.objects.filter(pk__in=registered[start : start + 500]).delete()
    Connector.objects.filter(name=BENCH_NAME).delete()


@scenario("bitbucket_cloud_sync")
def bitbucket_cloud_sync(quick: bool) -> dict:
    """10,000 repositories (``--quick``: 1,000) in 3 projects from the Bitbucket Cloud sandbox
    into the database: a first (full) sync, a bare-httpx replay of the same requests, the runs
    that finish the capped secondary kinds, and an unchanged re-sync."""
    import httpx
    from django.conf import settings
    from django.core.management import call_command

    from integrations import services
    from integrations.engine.secondary import RUN_CAP
    from integrations.engine.sync import integration_sync

    logging.disable(logging.INFO)  # one log line per request and entity would drown the table
    repos, prs, commits = (1_000, 3, 4) if quick else (10_000, 3, 4)
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe()
    process = context.Process(target=_sandbox_process, args=(child, repos, prs, commits))
    process.start()
    try:
        hello = parent.recv()
        call_command("migrate", interactive=False, verbosity=0)
        settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
        _bench_cleanup()
        connector = services.connector_create(
            name=BENCH_NAME,
            provider="bitbucket_cloud",
            auth_kind="workspace_access_token",
            base_url=hello["url"],
            secrets={"token": BENCH_TOKEN},
            config={"requests_per_hour": 1_000_000},  # the sandbox enforces no limit here
        )
        integration = services.integration_create(
            connector=connector, name=BENCH_NAME, target={"workspace": "acme"}, auto_import=True
        )

        def timed_sync() -> tuple[object, float, int]:
            with _count_queries() as counter:
                started = time.perf_counter()
                run = integration_sync(integration_id=integration.pk, trigger="manual")
                wall = time.perf_counter() - started
            assert run.state == "succeeded", (run.state, run.error)
            return run, wall, counter["queries"]

        run, wall, queries = timed_sync()
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        parent.send("count")
        served = parent.recv()
        minimum = _minimum_requests(hello["facts"])
        minimum_total = sum(minimum.values())
        first = {
            "wall_s": round(wall, 2),
            "requests": run.requests,
            "requests_served": served,
            "minimum": minimum_total,
            "minimum_parts": minimum,
            "ratio": round(run.requests / minimum_total, 3),
            "sql_queries": queries,
            "peak_rss_mib": round(peak_rss, 1),
            "discovered": run.discovered,
            "imported": run.imported,
            "pull_requests": run.pull_requests,
            "commits": run.commits,
        }

        parent.send("replay")
        replay = parent.recv()
        origin = hello["url"].rsplit("/2.0", 1)[0]
        headers = {"Authorization": f"Bearer {BENCH_TOKEN}"}
        started = time.perf_counter()
        with httpx.Client(base_url=origin, headers=headers, timeout=30) as client:
            for path, query in replay:
                response = client.get(path, params=query)
                if response.headers.get("content-type", "").startswith("application/json"):
                    response.json()
        raw = {"requests": len(replay), "wall_s": round(time.perf_counter() - started, 2)}

        # A run that spent a per-run cap leaves first syncs owed: later runs carry them on.
        catch_up = {"runs": 0, "requests": 0, "wall_s": 0.0}
        while catch_up["runs"] < 20 and max(run.pull_requests, run.commits) >= RUN_CAP:
            run, wall, _ = timed_sync()
            catch_up["runs"] += 1
            catch_up["requests"] += run.requests
            catch_up["wall_s"] = round(catch_up["wall_s"] + wall, 2)

        parent.send("reset")
        parent.recv()
        run, wall, queries = timed_sync()
        parent.send("count")
        unchanged = {
            "mode": run.mode,
            "requests": parent.recv(),
            "wall_s": round(wall, 3),
            "sql_queries": queries,
        }
        _bench_cleanup()
    finally:
        parent.send("stop")
        parent.recv()
        process.join(10)
        logging.disable(logging.NOTSET)
    return {
        "repositories": repos,
        "first_sync": first,
        "raw_httpx_replay": raw,
        "secondary_catch_up": catch_up,
        "unchanged_resync": unchanged,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (under 2 minutes)")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), default=None)
    args = parser.parse_args()
    results = {}
    for name in args.only or list(SCENARIOS):
        started = time.perf_counter()
        results[name] = SCENARIOS[name](args.quick)
        results[name]["wall_s"] = round(time.perf_counter() - started, 3)
    print(f"{'scenario':<14} figures")
    for name, figures in results.items():
        print(f"{name:<14} {json.dumps(figures)}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    print(f"figures written to {out / 'latest.json'}")


if __name__ == "__main__":
    main()
