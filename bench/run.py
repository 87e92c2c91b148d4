#!/usr/bin/env python
"""Lantern's benchmarks: ``python bench/run.py [--quick] [--only NAME ...]``.

Starts what each scenario needs (the Bitbucket sandbox on loopback, gunicorn serving Lantern),
runs against the database in ``DATABASE_URL`` (SQLite by default; the targets are for
PostgreSQL), prints one table and writes the figures to ``bench/results/latest.json``. Not part
of the test suite.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django  # noqa: E402

django.setup()

from bench import (  # noqa: E402, F401
    common,  # noqa: E402
    scenario_catalog,
    scenario_scorecards,
    scenario_sync,
    scenario_webhooks,
)
from bench.common import SCENARIOS, markdown_targets, print_table  # noqa: E402


def _machine() -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        version = connection.vendor
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            version = f"PostgreSQL {cursor.fetchone()[0]}"
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "database": version,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (under 2 minutes)")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), default=None)
    parser.add_argument(
        "--profile-sql", action="store_true", help="print where the SQL statements come from"
    )
    parser.add_argument(
        "--markdown", action="store_true", help="also print the targets as a Markdown table"
    )
    args = parser.parse_args()
    common.PROFILE_SQL = args.profile_sql
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)  # a fresh database works too
    results = {"machine": _machine(), "quick": args.quick}
    for name in args.only or list(SCENARIOS):
        started = time.perf_counter()
        results[name] = SCENARIOS[name](args.quick)
        results[name]["wall_s"] = round(time.perf_counter() - started, 1)
    print_table(results)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    print(f"figures written to {out / 'latest.json'}")
    if args.markdown:
        print()
        print(markdown_targets(results))


if __name__ == "__main__":
    main()
