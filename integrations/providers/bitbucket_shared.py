"""What the two Bitbucket providers share: their records carry the same keys, so the same
default field mappings serve both."""

# A repository's catalog-info.yaml (``catalog_info``, read by the engine) comes first, then what
# Bitbucket knows about the repository.
BITBUCKET_FIELD_MAPPINGS: dict[str, str] = {
    "metadata.description": "catalog_info.metadata.description || description",
    "metadata.tags": "catalog_info.metadata.tags || tags",
    "spec.owner": "catalog_info.spec.owner",
    "spec.lifecycle": "catalog_info.spec.lifecycle",
    "spec.system": "catalog_info.spec.system",
    'metadata.labels."bitbucket.org/project"': "project_key",
    'metadata.annotations."bitbucket.org/repo-url"': "url",
    'metadata.annotations."bitbucket.org/default-branch"': "default_branch",
    'metadata.annotations."backstage.io/source-location"': "source_location",
}
