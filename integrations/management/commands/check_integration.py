from django.core.management.base import BaseCommand, CommandError

from integrations import services
from integrations.management.commands.sync import error_summary_lines, run_outcome
from integrations.models import Integration


class Command(BaseCommand):
    help = (
        "Probe an integration's connector against its target (credentials, scopes, workspace or "
        "projects, TLS) and say what to fix, with how the last sync ended and the repositories "
        "that need attention. Exits non-zero when the probe fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("integration", help="integration name (or id)")

    def handle(self, *args, integration: str, **options):
        found = Integration.objects.select_related("connector").filter(name=integration).first()
        if found is None and integration.isdigit():
            found = Integration.objects.select_related("connector").filter(pk=integration).first()
        if found is None:
            raise CommandError(f"No integration named {integration!r}")
        connector = found.connector
        self.stdout.write(
            f"Integration {found.name} ({found.provider}, {found.state}) via connector "
            f"{connector.name} [{connector.auth_kind}] at {connector.base_url or 'the default URL'}"
        )
        self._sync_state(found)
        result = services.connector_test(connector=connector, target=found.target)
        for key, value in result.details.items():
            self.stdout.write(f"  {key}: {value}")
        if not result.ok:
            raise CommandError(f"Probe failed: {result.message}")
        self.stdout.write(self.style.SUCCESS(f"OK: {result.message}"))
        self.stdout.write(f"Webhook URL: {found.webhook_url}")
        if found.webhook_registration:
            detail = (
                f" ({found.webhook_registration_detail})"
                if found.webhook_registration_detail
                else ""
            )
            self.stdout.write(f"Webhook: {found.webhook_registration}{detail}")
        # Probed afresh: the cached answer pages use may be minutes old.
        can_write, why = services.writeback_access(integration=found, refresh=True)
        if can_write:
            self.stdout.write(
                f"Write-back: allowed ({found.get_writeback_mode_display().lower()} mode)"
            )
        else:
            self.stdout.write(f"Write-back: not allowed: {why}")

    def _sync_state(self, integration: Integration) -> None:
        """The last run's outcome and the records needing attention: printed before the probe,
        so a failing probe is seen next to what it did to the syncs."""
        run = integration.runs.order_by("-started_at", "-pk").first()
        if run is None:
            self.stdout.write("Last sync: never")
        else:
            when = (run.finished_at or run.started_at).isoformat(timespec="seconds")
            self.stdout.write(f"Last sync: {run_outcome(run)} ({run.trigger}, {when})")
            if run.error:
                self.stdout.write(f"  Error: {run.error}")
            for line in error_summary_lines(run):
                self.stdout.write(line)
        attention = integration.discovered.filter(error_since__isnull=False).count()
        if attention:
            noun = "repository needs" if attention == 1 else "repositories need"
            self.stdout.write(
                f"{attention} {noun} attention: the Discovered view's filter, or "
                f"GET /api/integrations/{integration.pk}/discovered?state=error"
            )
