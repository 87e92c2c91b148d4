"""Bitbucket integrations created before the default mappings gave valid values keep copies of
the old defaults: move the ones still as they were to the new expressions (a mapping a person
changed stays as it is), and annotate the raw project key."""

from django.db import migrations

PROVIDERS = ["bitbucket_cloud", "bitbucket_dc"]
OLD_TO_NEW = {
    "metadata.description": (
        "catalog_info.metadata.description || description",
        "if_valid(catalog_info.metadata.description, 'string') || description",
    ),
    "metadata.tags": (
        "catalog_info.metadata.tags || tags",
        "to_tags(catalog_info.metadata.tags || tags)",
    ),
    "spec.owner": ("catalog_info.spec.owner", "if_valid(catalog_info.spec.owner, 'entity_ref')"),
    "spec.lifecycle": (
        "catalog_info.spec.lifecycle",
        "if_valid(catalog_info.spec.lifecycle, 'string')",
    ),
    "spec.system": (
        "catalog_info.spec.system",
        "if_valid(catalog_info.spec.system, 'entity_ref')",
    ),
    'metadata.labels."bitbucket.org/project"': (
        "project_key",
        "if_valid(project_key, 'label_value')",
    ),
}
PROJECT_KEY_ANNOTATION = 'metadata.annotations."bitbucket.org/project-key"'


def forwards(apps, schema_editor):
    FieldMapping = apps.get_model("integrations", "FieldMapping")
    mappings = FieldMapping.objects.filter(integration__provider__in=PROVIDERS)
    for path, (old, new) in OLD_TO_NEW.items():
        mappings.filter(catalog_path=path, expression=old).update(expression=new)
    label = mappings.filter(
        catalog_path='metadata.labels."bitbucket.org/project"',
        expression=OLD_TO_NEW['metadata.labels."bitbucket.org/project"'][1],
    )
    for mapping in label:
        FieldMapping.objects.get_or_create(
            integration_id=mapping.integration_id,
            catalog_path=PROJECT_KEY_ANNOTATION,
            defaults={"expression": "project_key", "position": mapping.position},
        )


def backwards(apps, schema_editor):
    FieldMapping = apps.get_model("integrations", "FieldMapping")
    mappings = FieldMapping.objects.filter(integration__provider__in=PROVIDERS)
    for path, (old, new) in OLD_TO_NEW.items():
        mappings.filter(catalog_path=path, expression=new).update(expression=old)
    mappings.filter(catalog_path=PROJECT_KEY_ANNOTATION, expression="project_key").delete()


class Migration(migrations.Migration):
    dependencies = [("integrations", "0007_processing_errors_orphans_coalescing")]

    operations = [migrations.RunPython(forwards, backwards)]
