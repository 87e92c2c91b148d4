"""Write-back: the catalog file Lantern writes for an entity, the diff the preview shows and the
branch a pull request comes from (pure functions: no database, no network), then the
orchestration the services call: previews, one repository's write and a batch of them, and
the pull requests they opened following the sync.

The file is the entity as a person would write it in ``catalog-info.yaml``: Lantern's rendering
(:func:`catalog.rendering.source_document`) without what only Lantern or Backstage's own
ingestion knows (``metadata.uid``, ``etag``, ``metadata.integration``,
``integration_properties``, ``relations``, the ``managed-by`` location annotations, which
Backstage sets itself on reading the file). It is checked with Lantern's validator before it is
offered, so a repository is never handed a file its catalog would refuse.
"""

import difflib
import logging
import re
from dataclasses import dataclass

from django.db.models import Count, Q
from django.utils import timezone

from catalog.models import Entity
from catalog.rendering import dump_yaml, source_document
from catalog.validation import EntityValidationError, validate_or_raise
from integrations.choices import LinkState, PullRequestState, WritebackState
from integrations.models import DiscoveredEntity, ImportedEntity, WriteBack, WriteBackBatch
from integrations.providers import registry
from integrations.providers.base import Provider, ProviderAuthError, ProviderError
from integrations.providers.writes import (
    FileChange,
    UpstreamChanged,
    WriteAccessMissing,
    WriteConflict,
    WriteRequest,
    blob_id,
)

logger = logging.getLogger(__name__)

CATALOG_FILE = "catalog-info.yaml"
BRANCH_PREFIX = "lantern/catalog-info-"
INGESTION_ANNOTATIONS = (
    "backstage.io/managed-by-location",
    "backstage.io/managed-by-origin-location",
)
LANTERN_ONLY = ("uid", "etag", "integration")
MAX_SLUG = 60
_SLUG_RE = re.compile(r"[^a-z0-9._-]+")


def catalog_file_document(entity: Entity) -> dict:
    """The document of :func:`catalog_file_render`, validated (raises
    :class:`catalog.validation.EntityValidationError` naming each bad field)."""
    document = source_document(entity)
    document.pop("relations", None)
    document.pop("integration_properties", None)
    metadata = document["metadata"]
    for key in LANTERN_ONLY:
        metadata.pop(key, None)
    annotations = {
        key: value
        for key, value in (metadata.get("annotations") or {}).items()
        if key not in INGESTION_ANNOTATIONS
    }
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    validate_or_raise(document)
    return document


def catalog_file_render(entity: Entity) -> str:
    """The ``catalog-info.yaml`` Lantern writes for ``entity``."""
    return dump_yaml(catalog_file_document(entity))


def catalog_file_diff(current: bytes | None, proposed: str, *, path: str = CATALOG_FILE) -> str:
    """A unified diff from the file in the repository (``None``: there is none) to
    ``proposed``; empty when they are the same."""
    before = [] if current is None else current.decode("utf-8", "replace").splitlines(True)
    after = proposed.splitlines(True)
    return "".join(
        difflib.unified_diff(
            before,
            after,
            fromfile="/dev/null" if current is None else f"a/{path}",
            tofile=f"b/{path}",
        )
    )


def writeback_slug(name: str) -> str:
    """A branch-safe slug of an entity (or repository) name: lower case, runs of other
    characters as one ``-``, no leading or trailing punctuation, at most 60 characters."""
    slug = _SLUG_RE.sub("-", name.lower())
    slug = re.sub(r"\.{2,}", ".", slug)[:MAX_SLUG].strip("-._")
    return slug.removesuffix(".lock") or "entity"


def writeback_branch(name: str) -> str:
    """The branch a pull request of write-back comes from: ``lantern/catalog-info-<slug>``."""
    return BRANCH_PREFIX + writeback_slug(name)


# --- orchestration: previews, one repository's write, a batch ---------------------------------


@dataclass(frozen=True)
class WritebackPreview:
    """What writing back one repository would do: the file in the repository (``current``,
    None when there is none) and Lantern's (``proposed``), their diff, and whether the write may
    go ahead (``allowed``) or why not (``reason``: not imported, the file would not validate,
    the scope or permission missing, the file unreadable). ``current_blob`` is the git blob id
    of ``current``: a request made from this preview refuses to overwrite a file changed
    since."""

    discovered: DiscoveredEntity
    entity: Entity | None
    path: str
    current: str | None
    proposed: str
    diff: str
    unchanged: bool
    allowed: bool
    reason: str
    current_blob: str | None = None


def not_imported_reason(discovered: DiscoveredEntity) -> str:
    return (
        f"{discovered.name} is not imported: import it first, so there is a catalog entity to write"
    )


def linked_entities(discovered_ids: list[int]) -> dict[int, Entity]:
    """The catalog entity each discovered record is linked to (records without a link are
    left out), in one query."""
    links = ImportedEntity.objects.filter(
        discovered_id__in=discovered_ids, state=LinkState.LINKED
    ).select_related("entity")
    return {link.discovered_id: link.entity for link in links}


def writeback_preview_build(
    *,
    provider: Provider,
    discovered: DiscoveredEntity,
    entity: Entity | None,
    refusal: str = "",
    path: str = CATALOG_FILE,
) -> WritebackPreview:
    """One repository's preview. Reads the current file through the provider (a read is
    allowed even where writing is refused, so a person sees what a write would change);
    ``refusal`` is why the write may not go ahead whatever the file (permission, scope)."""

    def refused(reason: str, **values) -> WritebackPreview:
        fields = {"current": None, "proposed": "", "diff": "", "unchanged": False, **values}
        return WritebackPreview(
            discovered=discovered, entity=entity, path=path, allowed=False, reason=reason, **fields
        )

    if entity is None:
        return refused(not_imported_reason(discovered))
    try:
        proposed = catalog_file_render(entity)
    except EntityValidationError as exc:
        return refused(f"The entity {entity.ref} would not make a valid {path}: {exc}")
    try:
        content = provider.read_file(discovered.data, path)
    except ProviderError as exc:
        return refused(f"Reading {path} of {discovered.name} failed: {exc.message}")
    current = None if content is None else content.decode("utf-8", "replace")
    diff = catalog_file_diff(content, proposed, path=path)
    return WritebackPreview(
        discovered=discovered,
        entity=entity,
        path=path,
        current=current,
        proposed=proposed,
        diff=diff,
        unchanged=content == proposed.encode(),
        allowed=not refusal,
        reason=refusal,
        current_blob=blob_id(content),
    )


def _request_text(entity: Entity, *, creating: bool, user_name: str) -> dict[str, str]:
    verb = "Add" if creating else "Update"
    by = f" Requested by {user_name}." if user_name else ""
    return {
        "message": f"{verb} catalog-info.yaml for {entity.ref}",
        "title": f"{verb} catalog-info.yaml for {entity.ref}",
        "description": (
            f"Lantern proposes this repository's `catalog-info.yaml`, so the repository declares "
            f"its catalog entity `{entity.ref}` itself. Once merged, the catalog reads the "
            f"entity from this file on its next sync; edit it here to change the catalog.{by}"
        ),
    }


def _outcome_of(exc: ProviderError) -> tuple[str, str]:
    """The error and hint a failed write records (provider messages are redacted already)."""
    if isinstance(exc, UpstreamChanged):
        by = f" by {exc.author}" if exc.author else ""
        at = f" in commit {exc.commit[:12]}" if exc.commit else ""
        return exc.message, f"{exc.path} was changed upstream{by}{at}: review it and write again."
    if isinstance(exc, WriteConflict):
        return exc.message, (
            f"The branch kept moving ({exc.attempts} tries); nothing was written. Write again "
            "when the repository is quieter."
        )
    if isinstance(exc, WriteAccessMissing):
        return exc.message, (
            f"Grant {exc.missing} to the connector's credential, then write again."
        )
    if isinstance(exc, ProviderAuthError) or exc.status in (401, 403):
        return exc.message, (
            "The connector's credential was refused for this repository: check that it may "
            "read and write it, then write again."
        )
    if exc.status in (404, 410):
        return exc.message, (
            "The repository was not found: it may have been deleted or renamed since the last "
            "sync. Sync the integration, then write again."
        )
    return exc.message, "Bitbucket kept failing after retries: write again later."


def _finish(write: WriteBack, **values) -> None:
    values.setdefault("finished_at", timezone.now())
    for key, value in values.items():
        setattr(write, key, value)
    write.save(update_fields=list(values))


def writeback_execute(*, provider: Provider, write: WriteBack) -> WriteBack:
    """Write one repository's file and record the outcome on ``write``: the commit and the
    pull request, or the error with a hint. Never raises for a provider's refusal or a file
    that would not validate: the next repository of the batch goes on."""
    entity = write.entity
    if entity is None:
        _finish(
            write,
            state=WritebackState.FAILED,
            error=not_imported_reason(write.discovered),
            hint="Import the repository, then write again.",
        )
        return write
    try:
        proposed = catalog_file_render(entity)
        content = provider.read_file(write.discovered.data, write.path)
        if content == proposed.encode():
            _finish(
                write,
                state=WritebackState.SUCCEEDED,
                hint=f"The repository already holds this {write.path}; nothing was written.",
            )
            return write
        if write.expected_absent:
            expected = None
        elif write.expected_blob:
            expected = write.expected_blob
        else:
            expected = blob_id(content)
        user_name = write.requested_by.get_username() if write.requested_by else ""
        text = _request_text(entity, creating=content is None, user_name=user_name)
        result = provider.write_files(
            WriteRequest(
                repo=write.discovered.data,
                files=(FileChange(write.path, proposed),),
                mode=write.mode,
                branch=write.branch or None,
                expected={write.path: expected},
                reviewers=tuple(write.batch.reviewers) if write.mode == "pull_request" else (),
                **text,
            )
        )
    except EntityValidationError as exc:
        _finish(
            write,
            state=WritebackState.FAILED,
            error=f"The entity {entity.ref} would not make a valid {write.path}: {exc}",
            hint="Fix the entity (or the integration's field mappings), then write again.",
        )
        return write
    except ProviderError as exc:
        if exc.run_scoped:  # the request budget is spent: the batch pauses, this one waits
            raise
        error, hint = _outcome_of(exc)
        _finish(
            write,
            state=WritebackState.FAILED,
            error=error,
            hint=hint,
            attempts=getattr(exc, "attempts", write.attempts + 1),
        )
        logger.info(
            "integrations.writeback.failed",
            extra={
                "writeback_id": write.pk,
                "integration_id": write.integration_id,
                "error_type": type(exc).__name__,
                "status": exc.status,
            },
        )
        return write
    pull_request = result.pull_request_id is not None
    _finish(
        write,
        state=WritebackState.SUCCEEDED,
        branch=result.branch,
        commit=result.commit or "",
        pull_request_id=result.pull_request_id or "",
        pull_request_url=result.pull_request_url or "",
        pull_request_state=PullRequestState.OPEN if pull_request else "",
        attempts=result.attempts,
        hint="" if result.commit or pull_request else "Every file already held the content.",
    )
    logger.info(
        "integrations.writeback.written",
        extra={
            "writeback_id": write.pk,
            "integration_id": write.integration_id,
            "mode": write.mode,
            "commit": result.commit,
            "pull_request_id": result.pull_request_id,
            "attempts": result.attempts,
        },
    )
    return write


UNFINISHED = (WritebackState.PENDING, WritebackState.RUNNING)
# How long a batch whose request budget ran out waits before it goes on.
WRITEBACK_PAUSE_SECONDS = 300


def writeback_batch_run(*, batch_id: int) -> WriteBackBatch:
    """Run a batch: each unfinished repository in order, its outcome recorded and the batch's
    progress counted as it goes; one repository's failure never stops the others. Running it
    again (a redelivered task) skips what is finished: a repository interrupted mid-write is
    written again, and one whose file already holds Lantern's content is recorded as done.
    When the credential's request budget is spent the batch pauses (the rest stay pending,
    ``resume_after`` set on the returned batch) instead of failing every remaining
    repository."""
    batch = WriteBackBatch.objects.select_related("integration__connector").get(pk=batch_id)
    if batch.state in (WritebackState.SUCCEEDED, WritebackState.FAILED):
        return batch
    WriteBackBatch.objects.filter(pk=batch.pk).update(state=WritebackState.RUNNING)
    batch.state = WritebackState.RUNNING
    writes = (
        batch.writes.filter(state__in=UNFINISHED)
        .select_related("discovered", "entity", "requested_by", "batch")
        .order_by("pk")
    )
    provider = None
    for write in writes:
        WriteBack.objects.filter(pk=write.pk).update(state=WritebackState.RUNNING)
        if provider is None:
            provider = registry.for_integration(batch.integration)
        try:
            writeback_execute(provider=provider, write=write)
        except ProviderError as exc:
            if not exc.run_scoped:
                raise
            WriteBack.objects.filter(pk=write.pk).update(state=WritebackState.PENDING)
            _progress(batch)
            batch.resume_after = WRITEBACK_PAUSE_SECONDS
            logger.warning(
                "integrations.writeback.paused",
                extra={
                    "batch_id": batch.pk,
                    "integration_id": batch.integration_id,
                    "done": batch.done,
                    "total": batch.total,
                },
            )
            return batch
        except Exception as exc:  # a bug or the database: recorded, the batch goes on
            logger.exception(
                "integrations.writeback.crashed",
                extra={"writeback_id": write.pk, "integration_id": batch.integration_id},
            )
            _finish(
                write,
                state=WritebackState.FAILED,
                error=f"Lantern failed writing this repository ({type(exc).__name__})",
                hint="See the server log for the details; write again once it is fixed.",
            )
        _progress(batch)
    _progress(batch, finished=True)
    return batch


def _progress(batch: WriteBackBatch, *, finished: bool = False) -> None:
    counts = batch.writes.aggregate(
        done=Count("pk", filter=~Q(state__in=UNFINISHED)),
        failed=Count("pk", filter=Q(state=WritebackState.FAILED)),
    )
    batch.done, batch.failed = counts["done"], counts["failed"]
    fields = ["done", "failed"]
    if finished:
        batch.state = WritebackState.FAILED if batch.failed else WritebackState.SUCCEEDED
        batch.finished_at = timezone.now()
        fields += ["state", "finished_at"]
    batch.save(update_fields=fields)


def writebacks_follow_pull_requests(items: list[tuple[int, str, str]]) -> int:
    """The pull requests write-back opened follow what the sync or a webhook ingested: given
    (discovered id, pull request id, provider state), each record of that pull request takes
    the state (open, merged, declined; others, such as Cloud's superseded, as declined).
    Returns how many records changed."""
    states = {
        (discovered_id, str(external_id)): _pull_request_state(state)
        for discovered_id, external_id, state in items
    }
    if not states:
        return 0
    candidates = WriteBack.objects.filter(
        discovered_id__in={key[0] for key in states},
        pull_request_id__in={key[1] for key in states},
    ).only("pk", "discovered_id", "pull_request_id", "pull_request_state")
    changed = 0
    for write in candidates:
        state = states.get((write.discovered_id, write.pull_request_id))
        if state and state != write.pull_request_state:
            WriteBack.objects.filter(pk=write.pk).update(pull_request_state=state)
            changed += 1
    if changed:
        logger.info("integrations.writeback.pull_requests_followed", extra={"changed": changed})
    return changed


def _pull_request_state(state: str) -> str:
    state = (state or "").upper()
    if state in (PullRequestState.OPEN, PullRequestState.MERGED):
        return state
    return PullRequestState.DECLINED if state else ""
