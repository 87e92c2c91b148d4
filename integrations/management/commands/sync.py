from django.core.management.base import BaseCommand, CommandError

from integrations.choices import SyncState, SyncTrigger
from integrations.engine.sync import integration_sync
from integrations.models import Integration, SyncRun


class Command(BaseCommand):
    help = "Run one sync of an integration in the foreground, printing progress and a summary."

    def add_arguments(self, parser):
        parser.add_argument("integration", help="integration name (or id)")

    def handle(self, *args, integration: str, **options):
        found = Integration.objects.filter(name=integration).first()
        if found is None and integration.isdigit():
            found = Integration.objects.filter(pk=int(integration)).first()
        if found is None:
            raise CommandError(f"No integration named {integration!r}")

        def progress(run: SyncRun) -> None:
            self.stderr.write(
                f"\r{found.name}: {run.pages} pages, {run.requests} requests, "
                f"{run.discovered} new repositories",
                ending="",
            )

        run = integration_sync(
            integration_id=found.pk, trigger=SyncTrigger.MANUAL, on_progress=progress
        )
        self.stderr.write("")
        summary = (
            f"Sync of {found.name} {run.state}: {run.discovered} discovered, {run.imported} "
            f"imported, {run.refreshed} refreshed, {run.gone} gone, {run.pull_requests} pull "
            f"requests, {run.commits} commits, {run.requests} requests."
        )
        if run.message:
            summary += f"\n{run.message}"
        if run.state == SyncState.FAILED:
            raise CommandError(f"{summary}\nError: {run.error}")
        self.stdout.write(summary)
