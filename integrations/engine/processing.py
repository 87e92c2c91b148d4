"""Processing errors: what failed for one discovered record, kept on it until it succeeds.

Backstage lists the entities its processing failed for (the ``unprocessed`` module); Lantern
does the same per discovered record. Each stage (import, refresh, catalog file, pull requests,
commits) that fails stores ``{message, hint, at, run_id}`` under its name in
``DiscoveredEntity.processing_errors``, and ``error_since`` is the oldest of them, so "needs
attention" is one index lookup. A later success of that stage removes its entry.

A run collects its failures and successes in a :class:`RunErrors` and writes them in bulk; the
run record gets the count and the reasons grouped (``SyncRun.errors`` / ``error_summary``).
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from catalog.services import entities_status_write, processing_error_item
from integrations.choices import LinkState, ProcessingStage
from integrations.models import DiscoveredEntity, ImportedEntity, SyncRun
from integrations.providers.base import ProviderAuthError, ProviderError, repository_scoped

__all__ = ["RecordError", "RunErrors", "provider_record_error", "repository_scoped"]

MESSAGE_LENGTH = 2000
SUMMARY_EXAMPLES = 5


@dataclass(frozen=True)
class RecordError:
    """One failure of one record. ``reason`` is short and groups the run's summary ("not
    found (404)", "invalid entity"); ``hint`` says what a person can do about it."""

    stage: str
    message: str
    reason: str
    hint: str = ""


_STAGE_NOUN = {
    ProcessingStage.PULL_REQUESTS: "pull requests",
    ProcessingStage.COMMITS: "commits",
    ProcessingStage.CATALOG_FILE: "catalog-info.yaml",
}


def provider_record_error(stage: str, exc: ProviderError) -> RecordError:
    """A provider's refusal or failure to read one repository's ``stage``, with what to do."""
    noun = _STAGE_NOUN.get(stage, stage)
    if exc.status in (404, 410):
        return RecordError(
            stage,
            exc.message,
            reason=f"not found ({exc.status})",
            hint=(
                f"The repository was deleted or renamed since it was listed, or the credential "
                f"cannot see its {noun}. The next full sync marks a deleted repository gone; "
                "otherwise check the connector's permissions."
            ),
        )
    if exc.status in (401, 403) or isinstance(exc, ProviderAuthError):
        return RecordError(
            stage,
            exc.message,
            reason=f"not permitted ({exc.status or 'auth'})",
            hint=(
                f"The credential reads the repository but not its {noun}: grant it read access "
                "(Cloud: the Pull requests and Repositories read scopes; Data Center: "
                "REPO_READ on the repository), then sync again."
            ),
        )
    return RecordError(
        stage,
        exc.message,
        reason="provider failed" + (f" ({exc.status})" if exc.status else ""),
        hint="Bitbucket kept failing after retries; the next run tries this repository first.",
    )


@dataclass
class _Group:
    stage: str
    reason: str
    hint: str
    count: int = 0
    examples: list[str] = field(default_factory=list)


class RunErrors:
    """One run's record failures and successes, written together by :meth:`flush`."""

    def __init__(self, run: SyncRun | None = None):
        self.run = run
        self._failed: dict[int, dict[str, RecordError]] = {}
        self._succeeded: dict[int, set[str]] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._failed_ids: set[int] = set()  # every record that failed in this run

    def fail(self, discovered_id: int, name: str, error: RecordError) -> None:
        self._failed.setdefault(discovered_id, {})[error.stage] = error
        self._succeeded.get(discovered_id, set()).discard(error.stage)
        self._failed_ids.add(discovered_id)
        group = self._groups.setdefault(
            (error.stage, error.reason), _Group(error.stage, error.reason, error.hint)
        )
        group.count += 1
        if len(group.examples) < SUMMARY_EXAMPLES:
            group.examples.append(name)

    def succeed(self, discovered_ids: Iterable[int], stage: str) -> None:
        for pk in discovered_ids:
            if stage not in self._failed.get(pk, {}):
                self._succeeded.setdefault(pk, set()).add(stage)

    @property
    def count(self) -> int:
        return len(self._failed_ids)

    def summary(self) -> list[dict]:
        return [
            {
                "stage": group.stage,
                "reason": group.reason,
                "hint": group.hint,
                "count": group.count,
                "examples": group.examples,
            }
            for group in sorted(self._groups.values(), key=lambda group: -group.count)
        ]

    def flush(self, *, now: datetime | None = None) -> None:
        """Store what was collected since the last flush on the records (and the totals so far
        on the run object, which the run saves when it finishes)."""
        now = now or timezone.now()
        run_id = self.run.pk if self.run is not None else None
        failed, succeeded = self._failed, self._succeeded
        self._failed, self._succeeded = {}, {}
        if self.run is not None:
            self.run.errors = self.count
            self.run.error_summary = self.summary()
        if not failed and not succeeded:
            return
        # Successes only touch records that have an error stored: usually none.
        ids = set(failed) | set(
            DiscoveredEntity.objects.filter(
                pk__in=list(succeeded), error_since__isnull=False
            ).values_list("pk", flat=True)
        )
        rows = list(DiscoveredEntity.objects.filter(pk__in=ids).only("pk", "processing_errors"))
        for row in rows:
            errors = dict(row.processing_errors or {})
            for stage in succeeded.get(row.pk, ()):
                errors.pop(stage, None)
            for stage, error in failed.get(row.pk, {}).items():
                previous = errors.get(stage) or {}
                errors[stage] = {
                    "message": error.message[:MESSAGE_LENGTH],
                    "reason": error.reason,
                    "hint": error.hint,
                    # The first failure's time, while the same stage keeps failing.
                    "since": previous.get("since") or now.isoformat(),
                    "at": now.isoformat(),
                    "run_id": run_id,
                }
            row.processing_errors = errors
            row.error_since = min(
                (datetime.fromisoformat(item["since"]) for item in errors.values()), default=None
            )
        with transaction.atomic():
            DiscoveredEntity.objects.bulk_update(
                rows, ["processing_errors", "error_since"], batch_size=500
            )
            entity_statuses_write(discovered_ids=[row.pk for row in rows])


def processing_errors_clear(*, discovered_ids: Iterable[int], stages: Iterable[str]) -> int:
    """Forget these stages' errors of these records (they succeeded outside a run)."""
    errors = RunErrors()
    ids = list(discovered_ids)
    for stage in stages:
        errors.succeed(ids, stage)
    errors.flush()
    return len(ids)


# The Backstage error name a reason is shown under in an entity's ``status.items``.
_ERROR_NAMES = {"not found": "NotFoundError", "not permitted": "NotAllowedError"}


def _error_name(reason: str) -> str:
    return next(
        (name for prefix, name in _ERROR_NAMES.items() if reason.startswith(prefix)),
        "InputError" if reason.startswith(("invalid", "mapping")) else "ProcessingError",
    )


def entity_statuses_write(*, discovered_ids: Iterable[int]) -> int:
    """Show the processing errors of these records on the entities they are linked to, as
    Backstage's ``status.items`` (so its entity page shows them): one item per failing stage of
    every record linked to the entity, none once they all succeed."""
    linked = ImportedEntity.objects.filter(state=LinkState.LINKED)
    entity_ids = set(
        linked.filter(discovered_id__in=list(discovered_ids)).values_list("entity_id", flat=True)
    )
    if not entity_ids:
        return 0
    statuses: dict[int, list[dict]] = {pk: [] for pk in entity_ids}
    rows = linked.filter(entity_id__in=entity_ids).order_by("discovered_id")
    for entity_id, errors in rows.values_list("entity_id", "discovered__processing_errors"):
        for stage, error in sorted((errors or {}).items()):
            label = ProcessingStage(stage).label if stage in ProcessingStage.values else stage
            message = f"{label}: {error['message']}"
            if error.get("hint"):
                message += f" ({error['hint']})"
            name = _error_name(error.get("reason", ""))
            statuses[entity_id].append(processing_error_item(name=name, message=message))
    return entities_status_write(statuses=statuses)
