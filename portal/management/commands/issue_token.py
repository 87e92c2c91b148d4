from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from portal.models import ApiToken


class Command(BaseCommand):
    help = "Issue a new API token for a user and print it (shown once; only a digest is stored)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="a label to recognise the token by")

    def handle(self, *args, username: str, name: str, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}")
        _, raw = ApiToken.objects.issue(user=user, name=name)
        self.stderr.write(f"Token for {username} (use as 'Authorization: Bearer <token>'):")
        self.stdout.write(raw)
