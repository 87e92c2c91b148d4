from django.core.management.base import BaseCommand, CommandError

from catalog.importing import CatalogFileError, catalog_files, read_documents
from catalog.models import Scope
from catalog.services import DocumentError, entities_upsert


class Command(BaseCommand):
    help = (
        "Load Backstage catalog-info.yaml files (multi-document; files or directories) and "
        "upsert their entities by ref. All documents are validated first: on any error nothing "
        "is written."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
        parser.add_argument("--scope", help="path of the scope the entities belong to")

    def handle(self, *args, paths: list[str], scope: str | None, **options):
        target_scope = None
        if scope:
            target_scope = Scope.objects.filter(path=scope).first()
            if target_scope is None:
                raise CommandError(f"No scope with path {scope!r}")
        sources = []
        try:
            files = catalog_files(paths)
            for number, path in enumerate(files, start=1):
                for source in read_documents(path):
                    sources.append(source)
                    if len(sources) % 1000 == 0:
                        self._progress(
                            f"read {len(sources)} documents ({number}/{len(files)} files)"
                        )
        except CatalogFileError as exc:
            raise CommandError(str(exc)) from exc
        if len(sources) >= 1000:
            self._progress(f"read {len(sources)} documents from {len(files)} files\n")
        if not sources:
            raise CommandError("No entity documents found")
        self.stderr.write(f"Validating and writing {len(sources)} documents…")
        try:
            result = entities_upsert(
                documents=[source.document for source in sources],
                labels=[source.label for source in sources],
                scope=target_scope,
            )
        except DocumentError as exc:
            raise CommandError(f"Nothing imported. {exc}") from exc
        self.stdout.write(
            f"Imported {len(sources)} entities: {result.created} created, "
            f"{result.updated} updated, {result.unchanged} unchanged."
        )

    def _progress(self, message: str) -> None:
        self.stderr.write(f"\r{message}", ending="")
        self.stderr.flush()
