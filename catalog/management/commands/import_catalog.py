from django.core.management.base import BaseCommand, CommandError

from catalog.importing import CatalogFileError, catalog_files, read_documents
from catalog.models import Scope
from catalog.services import IMPORT_BATCH, DocumentError, entities_import


class Command(BaseCommand):
    help = (
        "Load Backstage catalog-info.yaml files (multi-document; files or directories) and "
        "upsert their entities by ref. All documents are validated first (a streaming pass), then "
        "written in batches in one transaction: on any error nothing is written."
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
        try:
            files = catalog_files(paths)
        except CatalogFileError as exc:
            raise CommandError(str(exc)) from exc

        def sources():
            for path in files:
                for source in read_documents(path):
                    yield source.document, source.label

        try:
            result = entities_import(sources=sources, scope=target_scope, progress=self._progress)
        except CatalogFileError as exc:
            raise CommandError(str(exc)) from exc
        except DocumentError as exc:
            raise CommandError(f"Nothing imported. {exc}") from exc
        if not result.documents:
            raise CommandError("No entity documents found")
        if result.documents >= IMPORT_BATCH:
            self.stderr.write("")
        self.stdout.write(
            f"Imported {result.documents} entities: {result.created} created, "
            f"{result.updated} updated, {result.unchanged} unchanged."
        )

    def _progress(self, stage: str, done: int) -> None:
        self.stderr.write(f"\r{stage} {done} documents", ending="")
        self.stderr.flush()
