#!/usr/bin/env python
"""Lantern's benchmarks: ``python bench/run.py [--quick] [--only NAME ...]``.

Prints one table and writes the figures to ``bench/results/latest.json``. Not part of the test
suite; run it against the database in ``DATABASE_URL`` (SQLite by default).
"""

import argparse
import json
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
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
