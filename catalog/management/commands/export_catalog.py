from pathlib import Path

from django.core.management.base import BaseCommand

from catalog.models import Entity
from catalog.rendering import dump_yaml, source_document


class Command(BaseCommand):
    help = "Write every catalog entity as one YAML stream (stdout, or --output FILE)."

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", help="file to write instead of stdout")
        parser.add_argument("--kind", help="only entities of this kind")

    def handle(self, *args, output: str | None, kind: str | None, **options):
        entities = Entity.objects.order_by("ref_key")
        if kind:
            entities = entities.filter(kind__iexact=kind)
        stream = Path(output).open("w", encoding="utf-8") if output else self.stdout
        count = 0
        try:
            for entity in entities.iterator(chunk_size=2000):
                stream.write("---\n")
                stream.write(dump_yaml(source_document(entity)))
                count += 1
        finally:
            if output:
                stream.close()
        self.stderr.write(f"Exported {count} entities.")
