from django.core.management.base import BaseCommand, CommandError

from integrations.choices import SyncState, SyncTrigger
from integrations.models import Integration, SyncRun
from integrations.services import integration_sync


def run_outcome(run: SyncRun) -> str:
    """How the run ended, in words: "succeeded", "succeeded with 3 errors", "partial: 2
    repositories could not be handled", "failed"."""
    errors = run.errors
    if run.state == SyncState.PARTIAL:
        noun = "repository" if errors == 1 else "repositories"
        return f"partial: {errors} {noun} could not be handled"
    if run.state == SyncState.SUCCEEDED and errors:
        return f"succeeded with {errors} error{'s' if errors != 1 else ''}"
    return run.state


def error_summary_lines(run: SyncRun) -> list[str]:
    """The run's record errors grouped by stage and reason, each with examples and the hint."""
    lines = []
    for group in run.error_summary or []:
        examples = ", ".join(group.get("examples") or [])
        more = group["count"] - len(group.get("examples") or [])
        if more > 0:
            examples += f" and {more} more"
        lines.append(f"  {group['stage']}: {group['reason']} — {group['count']} ({examples})")
        if group.get("hint"):
            lines.append(f"    {group['hint']}")
    return lines


class Command(BaseCommand):
    help = (
        "Run one sync of an integration in the foreground, printing progress and a summary with "
        "the records that could not be handled. Exits non-zero when the run failed (with "
        "--strict also when any record failed)."
    )

    def add_arguments(self, parser):
        parser.add_argument("integration", help="integration name (or id)")
        parser.add_argument(
            "--full",
            action="store_true",
            help="list every repository again (deletions and rule changes seen now) instead of "
            "only those changed since the last listing",
        )
        parser.add_argument(
            "--strict",
            action="store_true",
            help="exit non-zero when any repository could not be handled (a partial run or "
            "record errors), not only when the run failed",
        )

    def handle(self, *args, integration: str, full: bool, strict: bool, **options):
        found = Integration.objects.filter(name=integration).first()
        if found is None and integration.isdigit():
            found = Integration.objects.filter(pk=int(integration)).first()
        if found is None:
            raise CommandError(f"No integration named {integration!r}")

        def progress(run: SyncRun) -> None:
            self.stderr.write(
                f"\r{found.name}: {run.pages} pages, {run.requests} requests, "
                f"{run.discovered} new repositories",
                ending="",
            )

        run = integration_sync(
            integration_id=found.pk,
            trigger=SyncTrigger.MANUAL,
            on_progress=progress,
            full=True if full else None,
        )
        self.stderr.write("")
        summary = (
            f"Sync of {found.name} {run_outcome(run)}: {run.discovered} discovered, "
            f"{run.imported} imported, {run.refreshed} refreshed, {run.unchanged} unchanged, "
            f"{run.gone} gone, {run.pull_requests} pull requests, {run.commits} commits, "
            f"{run.requests} requests ({run.get_mode_display().lower()})."
        )
        if run.message:
            summary += f"\n{run.message}"
        lines = error_summary_lines(run)
        if lines:
            summary += "\nCould not be handled:\n" + "\n".join(lines)
        if run.state == SyncState.FAILED:
            raise CommandError(f"{summary}\nError: {run.error}")
        if strict and (run.errors or run.state == SyncState.PARTIAL):
            raise CommandError(f"{summary}\n--strict: the run had record errors")
        self.stdout.write(summary)
