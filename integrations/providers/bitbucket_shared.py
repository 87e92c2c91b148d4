"""What the two Bitbucket providers share: their records carry the same keys, so the same
default field mappings serve both, and their targets choose projects and a name pattern alike."""

from integrations.providers.base import TargetField

PROJECTS = TargetField(
    name="projects",
    label="Projects",
    help_text="Comma-separated project keys; empty for all projects.",
    many=True,
)
REPOSITORY_PATTERN = TargetField(
    name="repository_pattern",
    label="Repository name pattern",
    help_text="A regular expression on repository names; empty for all.",
)

# A repository's catalog-info.yaml (``catalog_info``, read by the engine) comes first, then what
# Bitbucket knows about the repository. Every value is valid where it goes by Backstage's rules,
# whatever the repository holds: a catalog file's value that breaks its rule is left out (the
# Bitbucket value or the default stands), tags are made valid, and the project key is a label
# only when it is a valid label value (a personal project's ``~jdoe`` is not) but always an
# annotation, where any string is allowed.
BITBUCKET_FIELD_MAPPINGS: dict[str, str] = {
    "metadata.description": "if_valid(catalog_info.metadata.description, 'string') || description",
    "metadata.tags": "to_tags(catalog_info.metadata.tags || tags)",
    "spec.owner": "if_valid(catalog_info.spec.owner, 'entity_ref')",
    "spec.lifecycle": "if_valid(catalog_info.spec.lifecycle, 'string')",
    "spec.system": "if_valid(catalog_info.spec.system, 'entity_ref')",
    'metadata.labels."bitbucket.org/project"': "if_valid(project_key, 'label_value')",
    'metadata.annotations."bitbucket.org/project-key"': "project_key",
    'metadata.annotations."bitbucket.org/repo-url"': "url",
    'metadata.annotations."bitbucket.org/default-branch"': "default_branch",
    'metadata.annotations."backstage.io/source-location"': "source_location",
}
