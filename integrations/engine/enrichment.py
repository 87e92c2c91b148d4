"""Catalog-file enrichment: a repository's catalog-info.yaml read into its record."""

from dataclasses import dataclass, field

import yaml

from catalog.importing import CatalogLoader
from integrations.choices import ProcessingStage
from integrations.engine.processing import RecordError, provider_record_error, repository_scoped
from integrations.models import DiscoveredEntity, Integration
from integrations.providers.base import Provider, ProviderError, RepoRecord


@dataclass
class CatalogFileReads:
    """What one page's catalog-file reads did: how many were made, the repositories (external
    ids) read, and those whose read failed, with why (their previous catalog info is kept)."""

    reads: int = 0
    read: list[str] = field(default_factory=list)
    failed: dict[str, RecordError] = field(default_factory=dict)


def _catalog_info(content: bytes | None) -> dict:
    """The parts of a repository's catalog-info.yaml that enrich its entity."""
    if content is None:
        return {}
    try:
        document = next(iter(yaml.load_all(content.decode("utf-8"), Loader=CatalogLoader)), None)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return {"error": f"catalog-info.yaml is not valid YAML: {exc}"[:300]}
    if not isinstance(document, dict):
        return {"error": "catalog-info.yaml does not hold an entity"}
    metadata = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
    spec = document.get("spec") if isinstance(document.get("spec"), dict) else {}
    return {
        "metadata": {k: metadata[k] for k in ("title", "description", "tags") if k in metadata},
        "spec": {k: spec[k] for k in ("type", "owner", "lifecycle", "system") if k in spec},
    }


def catalog_files_enrich(
    provider: Provider, integration: Integration, page: list[RepoRecord], *, budget: int
) -> CatalogFileReads:
    """Put each repository's catalog-info.yaml (``data["catalog_info"]``) into its record: read
    again only when the repository changed since the last read, at most ``budget`` reads. A
    read refused for one repository (403, 404, retries exhausted) keeps what that record had
    and is returned in ``failed``; credentials or budget failures raise."""
    result = CatalogFileReads()
    if not provider.catalog_file:
        return result
    previous = dict(
        DiscoveredEntity.objects.filter(
            integration=integration, external_id__in=[r.external_id for r in page]
        ).values_list("external_id", "data")
    )
    for record in page:
        stamp = record.updated_at.isoformat() if record.updated_at else None
        known = previous.get(record.external_id) or {}
        if "catalog_info" in known and (stamp is None or known.get("catalog_info_stamp") == stamp):
            _keep(record, known)
            continue
        if result.reads >= budget:  # read on a later run; keep what we had meanwhile
            _keep(record, known)
            continue
        result.reads += 1
        try:
            content = provider.read_file(record.data, provider.catalog_file)
        except ProviderError as exc:
            if not repository_scoped(exc):
                raise
            result.failed[record.external_id] = provider_record_error(
                ProcessingStage.CATALOG_FILE, exc
            )
            _keep(record, known)
            continue
        record.data["catalog_info"] = _catalog_info(content)
        record.data["catalog_info_stamp"] = stamp
        result.read.append(record.external_id)
    return result


def _keep(record: RepoRecord, known: dict) -> None:
    """The record keeps the catalog info it had (read again on a later run)."""
    if "catalog_info" in known:
        record.data["catalog_info"] = known["catalog_info"]
        record.data["catalog_info_stamp"] = known.get("catalog_info_stamp")
