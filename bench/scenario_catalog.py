"""The catalog read API over a large catalog, served by gunicorn to concurrent clients, and the
correlation of discovered records against the catalog in the database."""

import logging
import random
import statistics
import threading
import time
import tracemalloc

import httpx

from bench.common import (
    count_queries,
    percentiles,
    run_concurrently,
    scenario,
    served,
    target,
)

NAMESPACE = "bench"  # the bench's entities live in a namespace of their own
TEAMS, SYSTEMS = 100, 200
TYPES = ("service", "service", "service", "website", "library")
RUNS = 3  # runs per measured operation; the figures are the median of the runs


def _documents(count: int) -> list[dict]:
    """Groups, systems and components (the rest), with owners, systems, tags and annotations:
    the relations and search rows a real catalog has."""
    documents = [
        {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Group",
            "metadata": {"name": f"team-{index}", "namespace": NAMESPACE},
            "spec": {"type": "team", "children": []},
        }
        for index in range(TEAMS)
    ]
    documents += [
        {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "System",
            "metadata": {"name": f"system-{index}", "namespace": NAMESPACE},
            "spec": {"owner": f"group:{NAMESPACE}/team-{index % TEAMS}"},
        }
        for index in range(SYSTEMS)
    ]
    for index in range(count - len(documents)):
        documents.append(
            {
                "apiVersion": "backstage.io/v1alpha1",
                "kind": "Component",
                "metadata": {
                    "name": f"service-{index:06d}",
                    "namespace": NAMESPACE,
                    "description": f"Service number {index} of team {index % TEAMS}",
                    "tags": ["java" if index % 2 else "python", f"tier-{index % 3}"],
                    "annotations": {
                        "bitbucket.org/repo-url": f"https://bitbucket.org/acme/repo-{index:06d}"
                    },
                },
                "spec": {
                    "type": TYPES[index % len(TYPES)],
                    "lifecycle": "production" if index % 4 else "experimental",
                    "owner": f"group:{NAMESPACE}/team-{index % TEAMS}",
                    "system": f"{NAMESPACE}/system-{index % SYSTEMS}",
                },
            }
        )
    return documents


def load_catalog(count: int) -> dict:
    """Write the bench catalog through the one write path (``entities_upsert``) in batches,
    unless it is already there; then analyse the tables as autovacuum would."""
    from django.db import connection

    from catalog.models import Entity
    from catalog.services import entities_upsert

    present = Entity.objects.filter(namespace=NAMESPACE).count()
    if present == count:
        return {"entities": count, "loaded": False}
    Entity.objects.filter(namespace=NAMESPACE).delete()
    documents = _documents(count)
    started = time.perf_counter()
    for start in range(0, len(documents), 1000):
        entities_upsert(documents=documents[start : start + 1000])
    wall = time.perf_counter() - started
    if connection.vendor == "postgresql":
        # What autovacuum does to a live database soon after a bulk load: statistics for the
        # planner and a visibility map for index-only scans.
        with connection.cursor() as cursor:
            for table in ("catalog_entity", "catalog_entitysearch", "catalog_relation"):
                cursor.execute(f"VACUUM ANALYZE {table}")
    return {
        "entities": count,
        "loaded": True,
        "load_s": round(wall, 1),
        "entities_per_s": round(count / wall),
    }


def _bench_token() -> str:
    from django.contrib.auth import get_user_model

    from portal.models import ApiToken

    user, _ = get_user_model().objects.get_or_create(
        username="bench-reader", defaults={"is_staff": False}
    )
    ApiToken.objects.filter(user=user).delete()
    _, raw = ApiToken.objects.issue(user=user, name="bench")
    return raw


def _requests(count: int, rng: random.Random) -> dict[str, list[tuple[str, dict]]]:
    """The request mix per measured operation: (path, query) pairs; the cursor walk is a list of
    first pages whose next pages the clients follow."""
    components = count - TEAMS - SYSTEMS

    def by_name():
        name = f"service-{rng.randrange(components):06d}"
        return (f"/api/catalog/entities/by-name/component/{NAMESPACE}/{name}", {})

    return {
        "list_limit_100": [("/api/catalog/entities", {"limit": 100})],
        "by_query_filter_10_pages": [
            (
                "/api/catalog/entities/by-query",
                {"filter": f"kind=component,spec.type={kind}", "limit": 100},
            )
            for kind in ("service", "website", "library")
        ],
        # What Backstage's catalog table asks for (no target of its own).
        "by_query_ordered_by_name_10_pages": [
            (
                "/api/catalog/entities/by-query",
                {
                    "filter": f"kind=component,spec.type={kind}",
                    "orderField": "metadata.name,asc",
                    "limit": 100,
                },
            )
            for kind in ("service", "website", "library")
        ],
        "by_name": [by_name() for _ in range(500)],
        "facets_spec_type": [("/api/catalog/entity-facets", {"facet": "spec.type"})],
        "yaml_one_entity": [by_name() for _ in range(500)],
    }


def _measure(origin: str, token: str, operation: str, targets, *, clients: int, rounds: int):
    """``clients`` threads, each with its own keep-alive connection, issue ``rounds`` requests
    each; a cursor walk counts each of its 10 pages as one request."""
    headers = {"Authorization": f"Bearer {token}"}
    if operation.startswith("yaml"):
        headers["Accept"] = "application/yaml"
    samples: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(worker: int) -> None:
        local: list[float] = []
        with httpx.Client(base_url=origin, headers=headers, timeout=30) as http:
            issued = 0
            while issued < rounds:
                path, query = targets[(worker + issued) % len(targets)]
                pages = 10 if operation.endswith("_10_pages") else 1
                for _ in range(pages):
                    started = time.perf_counter()
                    response = http.get(path, params=query)
                    local.append(time.perf_counter() - started)
                    issued += 1
                    if response.status_code != 200:
                        errors.append(f"{response.status_code} {path}")
                        break
                    if pages > 1:
                        cursor = response.json()["pageInfo"].get("nextCursor")
                        if not cursor:
                            break
                        query = {"cursor": cursor, "limit": 100}
        with lock:
            samples.extend(local)

    wall = run_concurrently(client, clients)
    if errors:
        raise RuntimeError(f"{operation}: {len(errors)} failed requests, e.g. {errors[0]}")
    return {**percentiles(samples), "requests_per_s": round(len(samples) / wall)}


def _queries_per_request(token: str) -> dict:
    """SQL statements per request, in process, at two page sizes: the count must not grow. The
    catalog cache is emptied before each request, so a count or facets are always computed (as
    right after a catalog write)."""
    from django.core.cache import caches
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    name = f"/api/catalog/entities/by-name/component/{NAMESPACE}/service-000001"
    cases = {
        "list": ("/api/catalog/entities", "limit"),
        "by_query": ("/api/catalog/entities/by-query?filter=kind=component", "limit"),
    }
    figures = {}
    client.get("/api/catalog/entities?limit=1")  # the token's first use is recorded once
    for label, (path, size_param) in cases.items():
        counts = []
        for size in (10, 100):
            separator = "&" if "?" in path else "?"
            caches["catalog"].clear()
            with count_queries() as counter:
                response = client.get(f"{path}{separator}{size_param}={size}")
            assert response.status_code == 200, response.content[:300]
            counts.append(counter["queries"])
        figures[label] = {"limit_10": counts[0], "limit_100": counts[1]}
    for label, (path, headers) in {
        "by_name": (name, {}),
        "yaml": (name, {"HTTP_ACCEPT": "application/yaml"}),
        "facets": ("/api/catalog/entity-facets?facet=spec.type", {}),
    }.items():
        caches["catalog"].clear()
        with count_queries() as counter:
            response = client.get(path, **headers)
        assert response.status_code == 200, response.content[:300]
        figures[label] = counter["queries"]
    return figures


def _uncached_ms() -> dict:
    """What the cached answers cost when computed (the first request after a catalog write),
    in process, for the bench's reader: the exact count of each by-query filter's matches, and
    the facet counts. Inside a transaction nothing is cached."""
    from django.contrib.auth.models import AnonymousUser
    from django.db import transaction

    from catalog.query import filters_q
    from catalog.selectors import entities_count, entities_visible, entity_facets

    visible = entities_visible(user=AnonymousUser())  # what a reader without scopes sees
    figures = {}
    with transaction.atomic():
        for kind in ("service", "website", "library"):
            filtered = visible.filter(filters_q([f"kind=component,spec.type={kind}"]))
            started = time.perf_counter()
            entities_count(filtered)
            figures[f"count_spec_type_{kind}"] = round((time.perf_counter() - started) * 1000, 1)
        started = time.perf_counter()
        entity_facets(queryset=visible, facets=["spec.type"])
        figures["facets_spec_type"] = round((time.perf_counter() - started) * 1000, 1)
    return figures


@scenario("catalog_api")
def catalog_api(quick: bool) -> dict:
    """GET endpoints of the Backstage catalog API over 100,000 entities (``--quick``: 10,000),
    gunicorn with 2 gthread workers, 4 concurrent keep-alive clients; each operation is measured
    in :data:`RUNS` runs and the median of the runs' percentiles is the figure."""
    count, rounds = (10_000, 50) if quick else (100_000, 250)
    clients = 4
    logging.disable(logging.INFO)
    load = load_catalog(count)
    token = _bench_token()
    queries = _queries_per_request(token)
    targets = _requests(count, random.Random(7))
    latency = {}
    with served(workers=2, threads=4) as origin:
        for operation, operation_targets in targets.items():
            _measure(origin, token, operation, operation_targets, clients=1, rounds=5)  # warm
            runs = [
                _measure(
                    origin, token, operation, operation_targets, clients=clients, rounds=rounds
                )
                for _ in range(RUNS)
            ]
            latency[operation] = {
                **{
                    key: statistics.median(run[key] for run in runs)
                    for key in ("p50_ms", "p95_ms", "p99_ms", "requests_per_s")
                },
                "n": sum(run["n"] for run in runs),
                "p95_ms_per_run": [run["p95_ms"] for run in runs],
            }
    figures = {
        "catalog": load,
        "server": "gunicorn, 2 workers x 4 threads",
        "clients": clients,
        "latency": latency,
        "uncached_ms": _uncached_ms(),
        "sql_queries_per_request": queries,
    }
    for operation, limit in (
        ("list_limit_100", 50),
        ("by_query_filter_10_pages", 50),
        ("by_name", 15),
        ("yaml_one_entity", 15),
        ("facets_spec_type", 100),
    ):
        target(figures, f"{operation} p95 (ms)", latency[operation]["p95_ms"], limit)
    for label in ("list", "by_query"):
        sizes = queries[label]
        target(
            figures,
            f"{label}: SQL at limit 100 - at limit 10",
            sizes["limit_100"] - sizes["limit_10"],
            0,
        )
    return figures


@scenario("correlation")
def correlation(quick: bool) -> dict:
    """10,000 discovered records (``--quick``: 1,000) matched against the bench catalog in the
    database through the per-run correlation index, as a sync does: the index is built from the
    entities' rows, then each record is looked up."""
    from catalog.models import Entity
    from catalog.selectors import entities_in_scope
    from integrations.choices import Operator
    from integrations.engine.correlation import CorrelationIndex, Rule, index_entities

    records, entity_count = (1_000, 10_000) if quick else (10_000, 100_000)
    logging.disable(logging.INFO)
    load_catalog(entity_count)
    components = entity_count - TEAMS - SYSTEMS
    data = [
        {"name": f"service-{index * 7 % components:06d}", "slug": f"repo-{index:06d}"}
        for index in range(records)
    ]
    figures = {"records": records, "entities": Entity.objects.count()}
    for operator, rule in (
        ("equals", Rule("name", "metadata.name", Operator.EQUALS)),
        (
            "contains",
            Rule("slug", 'metadata.annotations."bitbucket.org/repo-url"', Operator.CONTAINS),
        ),
    ):
        # What correlation_index_build reads for an integration without a scope.
        rows = entities_in_scope(scope=None).filter(kind__iexact="Component")
        started = time.perf_counter()
        index = CorrelationIndex([rule], index_entities(rows, [rule]), kind="Component")
        built = time.perf_counter()
        matched = sum(1 for record in data if len(index.match(record)) == 1)
        finished = time.perf_counter()
        del index
        # The memory in a second, traced build: tracing every allocation slows it several times.
        tracemalloc.start()
        index = CorrelationIndex([rule], index_entities(rows, [rule]), kind="Component")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        del index
        figures[operator] = {
            "total_s": round(finished - started, 2),
            "index_build_s": round(built - started, 2),
            "match_s": round(finished - built, 3),
            "matched": matched,
            "index_peak_mib": round(peak / 2**20, 1),
        }
    for operator in ("equals", "contains"):
        label = f"{operator}: {records:,} x {entity_count:,} (s)"
        target(figures, label, figures[operator]["total_s"], 5.0)
    return figures
