"""Bulk writes that the ORM makes slowly, for the catalog and the integrations alike.

``bulk_create`` and ``bulk_update`` send PostgreSQL their rows as arrays, which psycopg quotes
element by element in Python: for JSON payloads that costs more than the write itself. On
PostgreSQL these functions send the rows by COPY or as one JSON parameter instead; elsewhere
(SQLite) they are ``bulk_create`` / ``bulk_update``, with the same results. The one-row
statements of the webhook intake are built once per model and kept, so the hottest path in
Lantern compiles no ORM query.

Table and column names always come from the models, quoted; values are always parameters.
"""

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache

from django.db import connection
from django.db.models import Model

BATCH_SIZE = 500  # rows per statement where the ORM does the writing (SQLite)


def rows_insert(model: type[Model], columns: Sequence[str], rows: list[tuple]) -> None:
    """Insert many rows of plain values (``columns`` are column names): COPY on PostgreSQL
    (no model instances to build, no statement to compile), ``bulk_create`` elsewhere."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        by_column = {field.column: field.attname for field in model._meta.concrete_fields}
        names = [by_column.get(column, column) for column in columns]
        objects = [model(**dict(zip(names, row, strict=True))) for row in rows]
        model.objects.bulk_create(objects, batch_size=1000)
        return
    quote = connection.ops.quote_name
    names = ", ".join(quote(column) for column in columns)
    statement = f"COPY {quote(model._meta.db_table)} ({names}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def instances_insert(instances: Sequence[Model]) -> None:
    """Insert new model instances (all of one model) as ``bulk_create`` does — defaults and
    ``auto_now`` fields filled in, ids set on them — by COPY on PostgreSQL, the ids drawn from
    the table's sequence first. A unique violation is an ``IntegrityError``, as from
    ``bulk_create``."""
    if not instances:
        return
    model = type(instances[0])
    if connection.vendor != "postgresql":
        model.objects.bulk_create(instances, batch_size=BATCH_SIZE)
        return
    meta = model._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, len(instances)],
        )
        ids = [row[0] for row in cursor.fetchall()]
    rows = []
    for instance, pk in zip(instances, ids, strict=True):
        instance.pk = pk
        rows.append((pk, *_prepared(instance, fields)))
        instance._state.adding = False
        instance._state.db = connection.alias
    with connection.wrap_database_errors:
        rows_insert(model, [meta.pk.column, *(field.column for field in fields)], rows)


def rows_upsert(
    model: type[Model], rows: list[dict], *, unique: Sequence[str], update: Sequence[str]
) -> None:
    """Create or update rows (column → value, every row the same columns) by the ``unique``
    columns, setting the ``update`` columns of the rows that exist. On PostgreSQL one
    ``INSERT ... ON CONFLICT`` reading all of them from a single JSON parameter (datetimes
    as ISO 8601)."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(
            [model(**row) for row in rows],
            update_conflicts=True,
            unique_fields=unique,
            update_fields=update,
            batch_size=BATCH_SIZE,
        )
        return
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    names = ", ".join(quote(column) for column in rows[0])
    assignments = ", ".join(f"{quote(column)} = EXCLUDED.{quote(column)}" for column in update)
    statement = (
        f"INSERT INTO {table} ({names}) SELECT {names} "  # noqa: S608
        f"FROM json_populate_recordset(NULL::{table}, %s::json) "
        f"ON CONFLICT ({', '.join(quote(column) for column in unique)}) "
        f"DO UPDATE SET {assignments}"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [json.dumps(rows, default=_json_default)])


def rows_update(model: type[Model], values: Mapping[int, Mapping[str, object]]) -> None:
    """Set fields of rows by primary key: ``{pk: {field name: value}}``, every row the same
    fields. On PostgreSQL one ``UPDATE ... FROM json_to_recordset`` (``bulk_update`` builds a
    CASE expression per row and field, in Python)."""
    if not values:
        return
    meta = model._meta
    names = list(next(iter(values.values())))
    if connection.vendor != "postgresql":
        objects = [model(pk=pk, **fields) for pk, fields in values.items()]
        model.objects.bulk_update(objects, names, batch_size=BATCH_SIZE)
        return
    quote = connection.ops.quote_name
    fields = [meta.get_field(name) for name in names]
    key = "pk_"  # the row's id in the recordset, named so no field's column can clash
    record = ", ".join(
        [f"{key} {meta.pk.db_type(connection)}"]
        + [f"{quote(field.column)} {field.db_type(connection)}" for field in fields]
    )
    assignments = ", ".join(f"{quote(f.column)} = value.{quote(f.column)}" for f in fields)
    recordset = [
        {key: pk, **{field.column: row[field.name] for field in fields}}
        for pk, row in values.items()
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(meta.db_table)} AS target SET {assignments} "  # noqa: S608
            f"FROM json_to_recordset(%s::json) AS value({record}) "
            f"WHERE target.{quote(meta.pk.column)} = value.{key}",
            [json.dumps(recordset, default=_json_default)],
        )


def instance_get(model: type[Model], fields: Sequence[str], **where: object) -> Model | None:
    """The one row whose fields equal ``where``, with only ``fields`` loaded (as ``only()``
    would load it), or ``None``; by a statement built once per model, fields and filter."""
    statement, columns = _select(model, tuple(fields), tuple(where))
    params = [
        model._meta.get_field(name).get_db_prep_value(value, connection)
        for name, value in where.items()
    ]
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        row = cursor.fetchone()
    return model.from_db(connection.alias, columns, row) if row else None


def instance_insert_new(instance: Model, *, unique: Sequence[str]) -> bool:
    """Insert ``instance`` unless a row with its ``unique`` field values exists (checked by
    the unique constraint on them, so two concurrent inserts cannot both get through); True,
    and its id set, when inserted. A conflict is no error, so an enclosing transaction is not
    broken by one; any other violation (a foreign key) is an ``IntegrityError``."""
    model = type(instance)
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    with connection.cursor() as cursor:
        cursor.execute(_insert_new(model, tuple(unique)), _prepared(instance, fields))
        row = cursor.fetchone()
    if row is None:
        return False
    instance.pk = row[0]
    instance._state.adding = False
    instance._state.db = connection.alias
    return True


def instances_insert_new(instances: Sequence[Model], *, unique: Sequence[str]) -> list[bool]:
    """:func:`instance_insert_new` for several instances of one model in one statement (one
    ``VALUES`` row each): per instance, in order, whether it was inserted (its id set) or a
    row with its ``unique`` values existed."""
    if not instances:
        return []
    model = type(instances[0])
    meta = model._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    keyed = [meta.get_field(name) for name in unique]
    params, keys = [], []
    for instance in instances:
        values = _prepared(instance, fields)
        params.extend(values)
        by_field = dict(zip(fields, values, strict=True))
        keys.append(tuple(by_field[field] for field in keyed))
    with connection.cursor() as cursor:
        cursor.execute(_insert_new_many(model, tuple(unique), len(instances)), params)
        inserted = {tuple(row[1:]): row[0] for row in cursor.fetchall()}
    result = []
    for instance, key in zip(instances, keys, strict=True):
        pk = inserted.get(key)
        if pk is not None:
            instance.pk = pk
            instance._state.adding = False
            instance._state.db = connection.alias
        result.append(pk is not None)
    return result


@cache
def _insert_new_many(model: type[Model], unique: tuple[str, ...], rows: int) -> str:
    meta, quote = model._meta, connection.ops.quote_name
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    columns = [quote(meta.get_field(name).column) for name in unique]
    row = f"({', '.join(['%s'] * len(fields))})"
    return (
        f"INSERT INTO {quote(meta.db_table)} "  # noqa: S608
        f"({', '.join(quote(field.column) for field in fields)}) "
        f"VALUES {', '.join([row] * rows)} "
        f"ON CONFLICT ({', '.join(columns)}) DO NOTHING "
        f"RETURNING {quote(meta.pk.column)}, {', '.join(columns)}"
    )


@cache
def _select(model: type[Model], fields: tuple[str, ...], where: tuple[str, ...]):
    meta, quote = model._meta, connection.ops.quote_name
    selected = [meta.get_field(name) for name in fields]
    conditions = " AND ".join(f"{quote(meta.get_field(name).column)} = %s" for name in where)
    statement = (
        f"SELECT {', '.join(quote(field.column) for field in selected)} "  # noqa: S608
        f"FROM {quote(meta.db_table)} WHERE {conditions}"
    )
    return statement, [field.attname for field in selected]


@cache
def _insert_new(model: type[Model], unique: tuple[str, ...]) -> str:
    meta, quote = model._meta, connection.ops.quote_name
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    conflict = ", ".join(quote(meta.get_field(name).column) for name in unique)
    return (
        f"INSERT INTO {quote(meta.db_table)} "  # noqa: S608
        f"({', '.join(quote(field.column) for field in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))}) "
        f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {quote(meta.pk.column)}"
    )


def _prepared(instance: Model, fields) -> list:
    """The instance's values of ``fields`` as an insert sends them (defaults and ``auto_now``
    filled in on the instance)."""
    return [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def tables_analyze(*models) -> None:
    """Refresh PostgreSQL's statistics of tables a bulk write just filled, so the planner does
    not pick plans made for empty tables (autovacuum gets there only later). Other databases
    plan without them."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for model in models:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
