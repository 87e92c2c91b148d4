"""``manage.py write_back``: write catalog-info.yaml back to an integration's repositories from
the command line, in the foreground."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from integrations import services
from integrations.choices import DiscoveredState, WritebackState
from integrations.models import DiscoveredEntity, Integration


class Command(BaseCommand):
    help = (
        "Write each repository's catalog-info.yaml (as Lantern renders its entity) back: in a "
        "pull request, or as a direct commit where the integration allows it. --dry-run prints "
        "the diffs and writes nothing. One line per repository with its outcome; exits 1 when "
        "any failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("integration", help="integration name (or id)")
        parser.add_argument(
            "--repository",
            action="append",
            default=[],
            metavar="NAME",
            help="a discovered repository's name (repeatable)",
        )
        parser.add_argument("--all-imported", action="store_true", help="every imported repository")
        parser.add_argument("--mode", choices=["pull_request", "commit"], default=None)
        parser.add_argument("--dry-run", action="store_true", help="print the diffs only")
        parser.add_argument(
            "--reviewer",
            action="append",
            default=[],
            help="who reviews the pull requests (Cloud account uuid, Data Center user name)",
        )

    def handle(self, *args, integration, repository, all_imported, mode, dry_run, **options):
        found = Integration.objects.select_related("connector").filter(name=integration).first()
        if found is None and integration.isdigit():
            found = Integration.objects.select_related("connector").filter(pk=int(integration))
            found = found.first()
        if found is None:
            raise CommandError(f"No integration named {integration!r}")
        ids = self._discovered_ids(found, repository, all_imported)
        try:
            if dry_run:
                self._preview(found, ids)
                return
            batch = services.writeback_request(
                integration=found,
                discovered_ids=ids,
                mode=mode,
                user=services.OPERATOR,
                reviewers=options["reviewer"],
                enqueue=False,
            )
        except ValidationError as exc:
            raise CommandError(_errors(exc)) from exc
        except PermissionDenied as exc:
            raise CommandError(str(exc)) from exc
        batch = services.writeback_run(batch_id=batch.pk)
        for write in batch.writes.select_related("discovered").order_by("pk"):
            self.stdout.write(_outcome(write))
        self.stdout.write(
            f"{batch.done} of {batch.total} written or up to date, {batch.failed} failed"
            + (
                " (paused: the request budget is spent; run again later)"
                if batch.done < batch.total
                else ""
            )
        )
        if batch.failed or batch.done < batch.total:
            raise SystemExit(1)

    def _discovered_ids(self, integration, names, all_imported) -> list[int]:
        records = DiscoveredEntity.objects.filter(integration=integration)
        if all_imported:
            ids = list(
                records.filter(state=DiscoveredState.IMPORTED)
                .order_by("name")
                .values_list("pk", flat=True)
            )
            if not ids:
                raise CommandError(f"Integration {integration.name} has no imported repository")
            return ids
        if not names:
            raise CommandError("Name repositories with --repository, or give --all-imported")
        by_name = dict(records.filter(name__in=names).values_list("name", "pk"))
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise CommandError(
                f"Not discovered by integration {integration.name}: {', '.join(unknown)}"
            )
        return [by_name[name] for name in names]

    def _preview(self, integration, ids) -> None:
        previews = services.writeback_preview(
            integration=integration, discovered_ids=ids, user=services.OPERATOR
        )
        for preview in previews:
            name = preview.discovered.name
            if not preview.allowed:
                self.stdout.write(f"{name}: cannot be written: {preview.reason}")
            elif preview.unchanged:
                self.stdout.write(f"{name}: {preview.path} already holds this content")
            else:
                self.stdout.write(f"{name}: {preview.path}\n{preview.diff}")


def _outcome(write) -> str:
    name = write.discovered.name
    if write.state == WritebackState.SUCCEEDED:
        if write.pull_request_url:
            return f"{name}: pull request {write.pull_request_url}"
        if write.commit:
            return f"{name}: committed {write.commit[:12]} to {write.branch}"
        return f"{name}: {write.hint or 'up to date'}"
    if write.state == WritebackState.FAILED:
        return f"{name}: failed: {write.error}\n  {write.hint}"
    return f"{name}: {write.state}"


def _errors(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
    return " ".join(exc.messages)
