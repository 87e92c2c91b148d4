import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

import catalog

DEMO_CATALOG = Path(catalog.__file__).parent / "fixtures" / "demo-catalog.yaml"


class Command(BaseCommand):
    help = "Create the demo admin (printing a fresh password) and load the sample catalog."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options):
        password = secrets.token_urlsafe(12)
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"is_staff": True, "is_superuser": True}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        call_command("import_catalog", str(DEMO_CATALOG), stdout=self.stdout, stderr=self.stderr)
        self.stdout.write(self.style.SUCCESS(f"Demo admin: {username} / {password}"))
