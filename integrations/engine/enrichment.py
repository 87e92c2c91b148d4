"""Catalog-file enrichment: a repository's catalog-info.yaml read into its record."""

import yaml

from catalog.importing import CatalogLoader
from integrations.models import DiscoveredEntity, Integration
from integrations.providers.base import Provider, RepoRecord


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
) -> int:
    """Put each repository's catalog-info.yaml (``data["catalog_info"]``) into its record: read
    again only when the repository changed since the last read, at most ``budget`` reads."""
    if not provider.catalog_file:
        return 0
    previous = dict(
        DiscoveredEntity.objects.filter(
            integration=integration, external_id__in=[r.external_id for r in page]
        ).values_list("external_id", "data")
    )
    reads = 0
    for record in page:
        stamp = record.updated_at.isoformat() if record.updated_at else None
        known = previous.get(record.external_id) or {}
        if "catalog_info" in known and (stamp is None or known.get("catalog_info_stamp") == stamp):
            record.data["catalog_info"] = known["catalog_info"]
            record.data["catalog_info_stamp"] = known.get("catalog_info_stamp")
            continue
        if reads >= budget:  # read on a later run; keep what we had meanwhile
            if "catalog_info" in known:
                record.data["catalog_info"] = known["catalog_info"]
                record.data["catalog_info_stamp"] = known.get("catalog_info_stamp")
            continue
        record.data["catalog_info"] = _catalog_info(
            provider.read_file(record.data, provider.catalog_file)
        )
        record.data["catalog_info_stamp"] = stamp
        reads += 1
    return reads
