from django.core.management.base import BaseCommand

from portal.celery import app


class Command(BaseCommand):
    help = "Run a Celery worker with the embedded beat scheduler (for the demo and one-box setups)."

    def add_arguments(self, parser):
        parser.add_argument("--concurrency", type=int, default=2)
        parser.add_argument("--loglevel", default="info")

    def handle(self, *args, concurrency: int, loglevel: str, **options):
        app.worker_main(
            [
                "worker",
                "--beat",
                f"--concurrency={concurrency}",
                f"--loglevel={loglevel}",
                "--without-gossip",
                "--without-mingle",
            ]
        )
