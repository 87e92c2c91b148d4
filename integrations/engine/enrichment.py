"""Catalog-file enrichment: a repository's catalog-info.yaml read into a copy of its record."""

from dataclasses import dataclass, field, replace

import yaml

from catalog.importing import CatalogLoader
from integrations.choices import ProcessingStage
from integrations.engine.processing import RecordError, provider_record_error, repository_scoped
from integrations.models import DiscoveredEntity, Integration
from integrations.providers.base import Provider, ProviderError, RepoRecord


@dataclass
class CatalogFileReads:
    """What one page's catalog-file reads did: the page's records with their catalog info, how
    many reads were made, the repositories (external ids) read, and those whose read failed,
    with why (their previous catalog info is kept)."""

    records: list[RepoRecord] = field(default_factory=list)
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
    provider: Provider,
    integration: Integration,
    page: list[RepoRecord],
    *,
    budget: int,
    stored: dict[str, dict] | None = None,
) -> CatalogFileReads:
    """The page's records with each repository's catalog-info.yaml (``data["catalog_info"]``),
    as new records (the provider's are left as they were): read again only when the repository
    changed since the last read, at most ``budget`` reads. A read refused for one repository
    (403, 404, retries exhausted) keeps what that record had and is returned in ``failed``;
    credentials or budget failures raise."""
    result = CatalogFileReads()
    if not provider.catalog_file:
        result.records = list(page)
        return result
    previous = stored
    if previous is None:  # the page's stored records (external id → data), unless given
        previous = dict(
            DiscoveredEntity.objects.filter(
                integration=integration, external_id__in=[r.external_id for r in page]
            ).values_list("external_id", "data")
        )
    for record in page:
        stamp = record.updated_at.isoformat() if record.updated_at else None
        known = previous.get(record.external_id) or {}
        if "catalog_info" in known and (stamp is None or known.get("catalog_info_stamp") == stamp):
            result.records.append(_kept(record, known))
            continue
        if result.reads >= budget:  # read on a later run; keep what we had meanwhile
            result.records.append(_kept(record, known))
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
            result.records.append(_kept(record, known))
            continue
        result.records.append(_with_catalog_info(record, _catalog_info(content), stamp))
        result.read.append(record.external_id)
    return result


def _with_catalog_info(record: RepoRecord, catalog_info: dict, stamp: str | None) -> RepoRecord:
    data = {**record.data, "catalog_info": catalog_info, "catalog_info_stamp": stamp}
    return replace(record, data=data)


def _kept(record: RepoRecord, known: dict) -> RepoRecord:
    """The record with the catalog info it had (read again on a later run)."""
    if "catalog_info" not in known:
        return record
    return _with_catalog_info(record, known["catalog_info"], known.get("catalog_info_stamp"))
