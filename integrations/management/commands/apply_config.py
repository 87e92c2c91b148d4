from django.core.management.base import BaseCommand, CommandError

from integrations.config import ConfigError, config_apply, config_load


class Command(BaseCommand):
    help = (
        "Create or update connectors and integrations (and the keys other apps register, such "
        "as checks and scorecards) from a YAML file, idempotently. Secrets "
        "are ${ENV_VAR} references resolved from the environment. Nothing is written unless the "
        "whole file is valid."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="the YAML configuration file")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="validate and show what would change, then roll everything back",
        )

    def handle(self, *args, file: str, dry_run: bool, **options):
        try:
            summary = config_apply(config_load(file), dry_run=dry_run)
        except ConfigError as exc:
            raise CommandError(f"Nothing was applied.\n{exc}") from exc
        for line in summary.lines():
            self.stdout.write(line)
