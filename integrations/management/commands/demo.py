"""``manage.py demo``: Lantern doing its whole job in one command, with no Bitbucket account.

Loads the sample catalog, starts a Bitbucket Cloud sandbox (and a Data Center one when
``BITBUCKET_DC_ENABLED``) in this process, creates a demo connector and integration per sandbox,
adds a few catalog entities that correlate with sandbox repositories (so Merge recommendations
appear), runs the first sync with a progress bar, schedules due syncs every minute, and serves
Lantern. Ctrl-C stops everything it started.
"""

import json
import subprocess
import sys
import threading
import time
import urllib.request
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, make_server

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from catalog.services import entities_upsert
from integrations import services
from integrations.choices import DiscoveredState, RecommendedAction, SyncTrigger
from integrations.management.commands.bitbucket_sandbox import sandbox_package
from integrations.models import Connector, DiscoveredEntity, Integration, SyncRun
from integrations.tasks import enqueue_due_integrations
from portal.celery import app as celery_app
from portal.models import ApiToken

if TYPE_CHECKING:
    from sandbox import SandboxServer, World

TOKEN = "demo-token"  # noqa: S105 - a sandbox credential


class Command(BaseCommand):
    help = "Start the full demo: sample catalog, Bitbucket sandbox(es), first sync, web server."

    def add_arguments(self, parser):
        parser.add_argument("address", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--repos", type=int, default=60, help="sandbox repositories")
        parser.add_argument("--sandbox-port", type=int, default=8990)
        parser.add_argument(
            "--check",
            action="store_true",
            help="non-interactive: start, sync, check the catalog over HTTP, stop (for CI)",
        )

    def handle(self, *args, address: str, repos: int, sandbox_port: int, check: bool, **options):
        self.sandbox = sandbox_package()
        if "127.0.0.1" not in settings.LANTERN_OUTBOUND_ALLOWLIST:
            raise CommandError(
                "The demo's sandbox runs on 127.0.0.1: set LANTERN_OUTBOUND_ALLOWLIST=127.0.0.1 "
                "(python3 dev.py demo does)"
            )
        if check:  # free ports, so a check never collides with a running demo
            address, sandbox_port = f"{address.rpartition(':')[0] or '127.0.0.1'}:0", 0
        call_command("demo_setup", stdout=self.stdout, stderr=self.stderr)
        servers = [self._cloud(repos, sandbox_port)]
        if settings.BITBUCKET_DC_ENABLED:
            servers.append(self._data_center(repos, sandbox_port + 1 if sandbox_port else 0))
        worker = None
        beat_stop = threading.Event()
        if celery_app.conf.task_always_eager:
            beat = threading.Thread(target=self._beat, args=(beat_stop,), daemon=True)
            beat.name = "demo-beat"
            beat.start()
        elif not check:  # a broker is configured: a real worker with beat runs the tasks
            worker = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "celery", "-A", "portal", "worker", "--beat", "-l", "info"]
            )
            self.stdout.write(f"Celery worker with beat started (pid {worker.pid})")
        self.stdout.write(
            self.style.SUCCESS(
                f"\nLantern: http://{address}/  catalog http://{address}/catalog/ · "
                f"integrations http://{address}/integrations/ · admin http://{address}/admin/ · "
                f"API http://{address}/api/docs/"
            )
        )
        try:
            if check:
                self._check(address)
            else:
                call_command("runserver", address, use_reloader=False, insecure_serving=True)
        finally:
            beat_stop.set()  # the scheduler stops with the demo, not with the process
            for server in servers:
                server.stop()
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=20)

    # -- sandboxes -----------------------------------------------------------------------------

    def _cloud(self, repos: int, port: int) -> "SandboxServer":
        world = self.sandbox.World.generate(
            1, repos=repos, projects=3, prs_per_repo=6, commits_per_repo=12
        )
        workspace = next(iter(world.workspaces))
        world.credentials.add_access_token(
            TOKEN, workspace=workspace, scopes=self.sandbox.READ_SCOPES
        )
        server = self.sandbox.SandboxServer(world, kind="cloud").start("127.0.0.1", port)
        self.stdout.write(f"Bitbucket Cloud sandbox on {server.url} (workspace {workspace})")
        connector = self._connector(
            "demo-cloud",
            provider="bitbucket_cloud",
            auth_kind="workspace_access_token",
            base_url=server.api_url,
        )
        integration = self._integration("demo-cloud", connector, {"workspace": workspace})
        self._lookalikes(world)
        self._first_sync(integration)
        self._import_some(integration)
        return server

    def _data_center(self, repos: int, port: int) -> "SandboxServer":
        world = self.sandbox.World.generate(
            2, repos=repos, projects=3, prs_per_repo=6, commits_per_repo=12
        )
        world.credentials.dc.add_token(TOKEN, name="demo")
        server = self.sandbox.SandboxServer(world, kind="dc").start("127.0.0.1", port)
        self.stdout.write(f"Bitbucket Data Center sandbox on {server.url} (private CA)")
        connector = self._connector(
            "demo-dc",
            provider="bitbucket_dc",
            auth_kind="personal_access_token",
            base_url=server.url,
            ca_pem=server.ca_pem,
        )
        integration = self._integration("demo-dc", connector, {})
        self._first_sync(integration)
        return server

    def _connector(self, name: str, **values) -> Connector:
        """The demo's connector, pointed at this run's sandbox (its port or CA may change)."""
        connector = Connector.objects.filter(name=name).first()
        if connector is None:
            return services.connector_create(name=name, secrets={"token": TOKEN}, **values)
        values.pop("provider")
        return services.connector_update(connector=connector, secrets={"token": TOKEN}, **values)

    def _integration(self, name: str, connector: Connector, target: dict) -> Integration:
        integration = Integration.objects.filter(name=name).first()
        if integration is None:
            integration = services.integration_create(
                connector=connector, name=name, target=target, description="The demo sandbox"
            )
        return integration

    def _lookalikes(self, world: "World") -> None:
        """Catalog entities named like a few sandbox repositories: Merge is recommended."""
        names = sorted(repo.slug for repo in world.iter_repositories())[:3]
        entities_upsert(
            documents=[
                {
                    "apiVersion": "backstage.io/v1alpha1",
                    "kind": "Component",
                    "metadata": {"name": name, "description": f"Hand-written entry for {name}"},
                    "spec": {"type": "service", "lifecycle": "production", "owner": "team-web"},
                }
                for name in names
            ]
        )

    def _import_some(self, integration: Integration) -> None:
        """Merge the look-alikes and register a few more, so every state shows in the UI."""
        waiting = DiscoveredEntity.objects.filter(
            integration=integration, state=DiscoveredState.DISCOVERED
        ).select_related("integration", "suggested_entity")
        merges = list(waiting.filter(recommended_action=RecommendedAction.MERGE)[:3])
        registers = list(waiting.filter(recommended_action=RecommendedAction.REGISTER)[:3])
        requests = [services.ImportRequest(discovered_id=row.pk) for row in merges + registers]
        results = services.discovered_import_many(integration=integration, requests=requests)
        for _, imported, error in results:
            if imported is None:
                self.stderr.write(f"  not imported: {error}")
        self.stdout.write(f"  imported {len(merges)} by merge and {len(registers)} by register")

    def _check(self, address: str) -> None:
        """Serve on ``address`` in a thread, check the catalog over HTTP, stop."""
        from django.core.wsgi import get_wsgi_application

        class QuietHandler(WSGIRequestHandler):
            def log_message(self, *args) -> None:
                pass

        host, _, port = address.rpartition(":")
        httpd = make_server(host, int(port), get_wsgi_application(), handler_class=QuietHandler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            from django.contrib.auth import get_user_model

            admin = get_user_model().objects.get(username="admin")
            _, token = ApiToken.objects.issue(user=admin, name="demo --check")
            base = f"http://{host}:{httpd.server_port}"
            entities = self._get_json(f"{base}/api/catalog/entities?filter=kind=component", token)
            linked = [e for e in entities if e["metadata"].get("integration")]
            integration = Integration.objects.get(name="demo-cloud")
            discovered = self._get_json(
                f"{base}/api/integrations/{integration.pk}/discovered?limit=500", token
            )["results"]
            merges = [d for d in discovered if d["recommended_action"] == "merge"]
            problems = []
            if not discovered:
                problems.append("no discovered repositories")
            if not linked:
                problems.append("no imported entities in the catalog")
            if not any("BitbucketCloud" in e.get("integration_properties", {}) for e in linked):
                problems.append("no ingested properties on imported entities")
            if not merges and not any(
                item["action"] == "MERGE" for e in linked for item in e["metadata"]["integration"]
            ):
                problems.append("no merge recommendations")
            if problems:
                raise CommandError("Demo check failed: " + "; ".join(problems))
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo check passed: {len(discovered)} discovered, {len(linked)} imported "
                    f"entities served over HTTP by {base}"
                )
            )
        finally:
            httpd.shutdown()

    @staticmethod
    def _get_json(url: str, token: str):
        request = urllib.request.Request(  # noqa: S310 - the demo's own loopback server
            url, headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            return json.loads(response.read())

    # -- syncing -------------------------------------------------------------------------------

    def _first_sync(self, integration: Integration) -> SyncRun:
        started = time.monotonic()

        def progress(run: SyncRun) -> None:
            done = min(run.pages, 40)
            bar = "#" * done + "." * (40 - done)
            sys.stderr.write(
                f"\r  {integration.name} [{bar}] {run.pages} pages, {run.requests} requests, "
                f"{run.discovered} repositories"
            )
            sys.stderr.flush()

        run = services.integration_sync(
            integration_id=integration.pk, trigger=SyncTrigger.MANUAL, on_progress=progress
        )
        sys.stderr.write("\n")
        self.stdout.write(
            f"  first sync {run.state} in {time.monotonic() - started:.1f} s: {run.discovered} "
            f"discovered, {run.pull_requests} pull requests, {run.commits} commits"
            + (f" — {run.error}" if run.error else "")
        )
        return run

    def _beat(self, stop: threading.Event) -> None:
        """The in-process stand-in for Celery beat: enqueue due syncs every minute until the
        demo stops."""
        while not stop.wait(60):
            try:
                enqueue_due_integrations()
            except Exception:  # keep the demo's scheduler alive whatever one sync does
                self.stderr.write("scheduled sync failed (see the integration's runs)")
