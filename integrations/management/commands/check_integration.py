from django.core.management.base import BaseCommand, CommandError

from integrations import services
from integrations.models import Integration


class Command(BaseCommand):
    help = (
        "Probe an integration's connector against its target (credentials, scopes, workspace or "
        "projects, TLS) and say what to fix. Exits non-zero when the probe fails."
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
