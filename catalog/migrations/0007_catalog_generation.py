"""The catalog generation: a PostgreSQL sequence that every statement writing the catalog
advances, so answers that are expensive over a large catalog (exact counts, facet counts) can be
cached until the catalog changes (``catalog.selectors.cached_per_generation``).

Statement-level triggers cost one ``nextval`` per write statement, whatever its row count (a COPY
or a bulk upsert of thousands of rows included), and a sequence takes no row lock, so concurrent
writers never wait on each other. Other databases get no trigger: nothing is cached there.
"""

from django.db import migrations

TABLES = (
    "catalog_entity",
    "catalog_entitysearch",
    "catalog_relation",
    "catalog_scope",
    "catalog_scopemembership",
)

FORWARD = [
    "CREATE SEQUENCE IF NOT EXISTS catalog_generation",
    """
    CREATE OR REPLACE FUNCTION catalog_generation_advance() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM nextval('catalog_generation');
        RETURN NULL;
    END
    $$
    """,
    *(
        f"""
        CREATE TRIGGER catalog_generation_advance
        AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
        FOR EACH STATEMENT EXECUTE FUNCTION catalog_generation_advance()
        """
        for table in TABLES
    ),
]

BACKWARD = [
    *(f"DROP TRIGGER IF EXISTS catalog_generation_advance ON {table}" for table in TABLES),
    "DROP FUNCTION IF EXISTS catalog_generation_advance()",
    "DROP SEQUENCE IF EXISTS catalog_generation",
]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for statement in statements:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("catalog", "0006_search_facet_index")]

    operations = [migrations.RunPython(_run(FORWARD), _run(BACKWARD))]
