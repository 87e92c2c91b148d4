"""Extended statistics on the search rows' (key, value) pairs, on PostgreSQL.

Without them the planner multiplies the selectivity of ``key = 'spec.type'`` by that of
``value = 'service'`` as if they were independent, underestimates a common filter by an order of
magnitude, and sorts every match instead of walking the ``ref_key`` index until a page is full
(540 ms instead of under 1 ms for a page of 100 over 100,000 entities)."""

from django.db import migrations

NAME = "catalog_search_key_value_mcv"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE STATISTICS IF NOT EXISTS {NAME} (mcv, dependencies) "
            "ON key, value FROM catalog_entitysearch"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP STATISTICS IF EXISTS {NAME}")


class Migration(migrations.Migration):
    dependencies = [("catalog", "0004_document_json_keeps_key_order")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
