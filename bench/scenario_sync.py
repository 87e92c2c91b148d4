"""Bitbucket Cloud syncs against the sandbox: a first sync of 10,000 repositories with pull
requests and commits, against the fewest requests possible and a bare-httpx replay of the same
pages; the unchanged re-sync; one changed repository; and the memory of a 100,000-repository
listing."""

import logging
import math
import multiprocessing
import re
import time
from contextlib import contextmanager

from bench.common import count_queries, peak_rss_mib, scenario, target

# -- Bitbucket Cloud sync against the sandbox -----------------------------------------------------

BENCH_TOKEN = "bench-token"  # noqa: S105 (a sandbox credential)
BENCH_NAME = "bench-bitbucket-cloud"


def _sandbox_process(conn, repos: int, prs: int, commits: int) -> None:  # noqa: C901
    """The sandbox in its own process (so its CPU and memory are not the sync's): generate the
    world, report what the minimum request count needs, then answer commands until ``stop``."""
    from sandbox import READ_SCOPES, SandboxServer, World

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
        elif command == "log":
            conn.send([e.path for e in entries])
        elif command == "replay":  # the successful GETs, to fetch again with a bare client
            conn.send([(e.path, e.query) for e in entries if e.status in (200, 404)])
        elif command == "reset":
            server.api.log.reset()
            conn.send("ok")
        elif command == "change":  # one repository changes: a push and a new pull request
            repo = listed[len(listed) // 2]
            world.commit_create(
                workspace="acme", slug=repo.slug, files={"CHANGES.md": "one more line\n"}
            )
            world.commit_create(
                workspace="acme",
                slug=repo.slug,
                branch="feature/bench",
                parents=[repo.branches[repo.mainbranch]],
                files={"feature.txt": "new\n"},
            )
            world.pullrequest_open(
                workspace="acme", slug=repo.slug, title="Bench change", source="feature/bench"
            )
            server.api.log.reset()
            conn.send(repo.uuid)  # the client addresses repositories by uuid


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


def _bench_cleanup() -> None:
    from catalog.models import Entity
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


@contextmanager
def _sandbox(repos: int, prs: int, commits: int):
    """The sandbox process; yields (hello, ask) where ``ask(command)`` returns its answer."""
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe()
    process = context.Process(target=_sandbox_process, args=(child, repos, prs, commits))
    process.start()

    def ask(command: str):
        parent.send(command)
        return parent.recv()

    try:
        yield parent.recv(), ask
    finally:
        ask("stop")
        process.join(10)


def _bench_integration(url: str, **options):
    from django.conf import settings

    from integrations import services

    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    settings.LANTERN_WEBHOOKS_AUTO_REGISTER = False
    _bench_cleanup()
    connector = services.connector_create(
        name=BENCH_NAME,
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        base_url=url,
        secrets={"token": BENCH_TOKEN},
        config={"requests_per_hour": 1_000_000},  # the sandbox enforces no limit here
    )
    return services.integration_create(
        connector=connector,
        name=BENCH_NAME,
        target={"workspace": "acme"},
        **{"auto_import": True, **options},
    )


@scenario("bitbucket_cloud_sync")
def bitbucket_cloud_sync(quick: bool) -> dict:
    """10,000 repositories (``--quick``: 1,000) in 3 projects from the Bitbucket Cloud sandbox
    into the database: a first (full) sync, a bare-httpx replay of the same requests, the runs
    that finish the capped secondary kinds, and an unchanged re-sync."""
    import httpx

    from integrations.engine.secondary import RUN_CAP
    from integrations.engine.sync import integration_sync

    logging.disable(logging.INFO)  # one log line per request and entity would drown the table
    repos, prs, commits = (1_000, 3, 4) if quick else (10_000, 3, 4)
    with _sandbox(repos, prs, commits) as (hello, ask):
        integration = _bench_integration(hello["url"])

        def timed_sync() -> tuple[object, float, int]:
            with count_queries() as counter:
                started = time.perf_counter()
                run = integration_sync(integration_id=integration.pk, trigger="manual")
                wall = time.perf_counter() - started
            assert run.state == "succeeded", (run.state, run.error)
            return run, wall, counter["queries"]

        run, wall, queries = timed_sync()
        served = ask("count")
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
            "discovered": run.discovered,
            "imported": run.imported,
            "pull_requests": run.pull_requests,
            "commits": run.commits,
        }

        replay = ask("replay")
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

        ask("reset")
        run, wall, queries = timed_sync()
        unchanged = {
            "mode": run.mode,
            "requests": ask("count"),
            "wall_s": round(wall, 3),
            "sql_queries": queries,
        }

        changed_uuid = ask("change")
        run, wall, queries = timed_sync()
        log = ask("log")
        pattern = re.compile(rf"/{re.escape(changed_uuid)}/(pullrequests|commits)(/|$)")
        secondary = [path for path in log if pattern.search(path)]
        changed = {
            "mode": run.mode,
            "requests": len(log),
            "its_secondary_pages": len(secondary),
            "wall_s": round(wall, 3),
            "sql_queries": queries,
            "pull_requests": run.pull_requests,
            "commits": run.commits,
        }
        _bench_cleanup()
    logging.disable(logging.NOTSET)
    figures = {
        "repositories": repos,
        "first_sync": first,
        "raw_httpx_replay": raw,
        "sync_over_raw": round(first["wall_s"] / raw["wall_s"], 2),
        "secondary_catch_up": catch_up,
        "unchanged_resync": unchanged,
        "one_changed": changed,
    }
    target(figures, "first sync requests / minimum", first["ratio"], 1.02)
    target(figures, "first sync wall / raw paging wall", figures["sync_over_raw"], 2.0)
    target(figures, "unchanged re-sync requests", unchanged["requests"], 2)
    target(figures, "one changed: requests", changed["requests"], 2 + len(secondary))
    return figures


def _sync_100k_child(conn, url: str, quick: bool) -> None:
    """A fresh interpreter (spawned) runs the sync alone, so its peak RSS is the sync's."""
    import django

    django.setup()
    logging.disable(logging.INFO)
    from integrations.engine.sync import integration_sync

    # Auto-import off: its work is per page (and its speed is the first-sync scenario's).
    integration = _bench_integration(url, secondary_kinds=[], auto_import=False)
    started = time.perf_counter()
    run = integration_sync(integration_id=integration.pk, trigger="manual")
    wall = time.perf_counter() - started
    figures = {
        "state": run.state,
        "wall_s": round(wall, 1),
        "requests": run.requests,
        "discovered": run.discovered,
        "imported": run.imported,
        "peak_rss_mib": peak_rss_mib(),
    }
    _bench_cleanup()
    conn.send(figures)


@scenario("sync_100k_memory")
def sync_100k_memory(quick: bool) -> dict:
    """Peak memory of a first sync of 100,000 repositories (``--quick``: 10,000) against the
    bench catalog: the listing is streamed page by page and correlated, so memory must not grow
    with it. Secondary kinds (capped per run) and auto-import (per page) are the first-sync
    scenario's."""
    repos = 10_000 if quick else 100_000
    with _sandbox(repos, 0, 1) as (hello, _ask):
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=_sync_100k_child, args=(child, hello["url"], quick))
        process.start()
        figures = parent.recv()
        process.join(60)
    if figures["state"] != "succeeded":
        raise RuntimeError(f"the 100,000-repository sync failed: {figures}")
    figures = {"repositories": repos, **figures}
    target(figures, "peak RSS (MiB)", figures["peak_rss_mib"], 300)
    return figures
