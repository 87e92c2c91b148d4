"""The software catalog: entities in the Backstage envelope, their relations and search rows."""

import hashlib
import json
import uuid

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse

from catalog.refs import DEFAULT_NAMESPACE, ref_key, stringify_entity_ref


def json_loads(data: str | bytes):
    """``json.loads``, through orjson; what orjson refuses and the json module accepts (integers
    beyond 64 bits, ``NaN``) still decodes as before."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


class DocumentJSONField(models.JSONField):
    """JSON that keeps the key order its author wrote.

    PostgreSQL's ``jsonb`` reorders keys; entity documents are shown and exported as YAML, so they
    are stored as ``json`` there. Nothing filters on these columns (filters use the search
    table), so jsonb's operators are not needed.
    """

    def db_type(self, connection):
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)

    def get_db_prep_value(self, value, connection, prepared=False):
        # Django sends ``Jsonb``, which PostgreSQL reorders before casting to json.
        if connection.vendor == "postgresql" and value is not None and not hasattr(value, "as_sql"):
            from psycopg.types.json import Json

            return Json(value, dumps=lambda data: json.dumps(data, cls=self.encoder))
        return super().get_db_prep_value(value, connection, prepared)

    def from_db_value(self, value, expression, connection):
        # psycopg decodes ``json`` (unlike ``jsonb``, which Django asks to keep as text).
        if value is not None and not isinstance(value, str | bytes):
            return value
        return super().from_db_value(value, expression, connection)


class Scope(models.Model):
    """A node of the account → org → project tree; entities and integrations belong to one.

    ``path`` (slugs joined by ``/``) is materialised so "this scope and its descendants" is one
    indexed prefix query instead of a recursive walk.
    """

    class Kind(models.TextChoices):
        ACCOUNT = "account", "Account"
        ORG = "org", "Organization"
        PROJECT = "project", "Project"

    PARENT_KIND = {Kind.ACCOUNT: None, Kind.ORG: Kind.ACCOUNT, Kind.PROJECT: Kind.ORG}

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=63)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    path = models.CharField(max_length=255, unique=True, editable=False)

    class Meta:
        ordering = ["path"]

    def __str__(self) -> str:
        return self.path

    def save(self, *args, **kwargs):
        self.path = f"{self.parent.path}/{self.slug}" if self.parent_id else self.slug
        super().save(*args, **kwargs)

    def clean(self) -> None:
        expected_parent_kind = self.PARENT_KIND[self.Kind(self.kind)]
        parent_kind = self.parent.kind if self.parent_id else None
        if parent_kind != expected_parent_kind:
            if expected_parent_kind is None:
                raise ValidationError({"parent": "An account is a root scope: it has no parent."})
            raise ValidationError(
                {"parent": f"The parent of a {self.kind} scope must be a {expected_parent_kind}."}
            )


class ScopeMembership(models.Model):
    """A user belongs to a scope and so sees it and everything below it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="scope_memberships"
    )
    scope = models.ForeignKey(Scope, on_delete=models.CASCADE, related_name="memberships")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "scope"], name="scope_membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.scope}"


class Location(models.Model):
    """A registered location (Backstage's locations API): a catalog file the catalog reads its
    entities from, again on a schedule and on request.

    A ``url`` location is read by whichever integration owns the URL (the catalog does not know
    how: readers are registered into :mod:`catalog.locations`), so ``scope`` and ``source`` are
    that integration's; a ``file`` location is a path under ``LANTERN_LOCATION_FILE_ROOTS``.
    ``last_error``: why the last read failed (empty once one succeeds).
    """

    class Type(models.TextChoices):
        URL = "url", "URL"
        FILE = "file", "File"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=16, choices=Type.choices)
    target = models.CharField(max_length=2000)
    scope = models.ForeignKey(
        Scope, null=True, blank=True, on_delete=models.PROTECT, related_name="locations"
    )
    source = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    next_refresh_at = models.DateTimeField(null=True, blank=True)
    last_error = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["type", "target"], name="catalog_location_unique")
        ]
        indexes = [models.Index(fields=["next_refresh_at"], name="catalog_location_due")]

    def __str__(self) -> str:
        return self.ref

    @property
    def ref(self) -> str:
        """``type:target``, as Backstage's ``stringifyLocationRef`` writes it."""
        return f"{self.type}:{self.target}"

    @property
    def entity_name(self) -> str:
        """The name of the Location entity Backstage generates for it."""
        return "generated-" + hashlib.sha1(self.ref.encode(), usedforsecurity=False).hexdigest()

    @property
    def entity_ref(self) -> str:
        return stringify_entity_ref("Location", DEFAULT_NAMESPACE, self.entity_name)


class Entity(models.Model):
    """One catalog entity.

    What the API filters and sorts on are columns; the rest of the document is JSON. ``ref_key`` is
    the lower-cased ``kind:namespace/name``, which makes the uniqueness case-insensitive on every
    database and gives the default ordering by entity ref an index.
    ``integration_links`` (``metadata.integration``) and ``integration_properties`` are written
    only by the integrations engine.
    """

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    api_version = models.CharField(max_length=100, default="backstage.io/v1alpha1")
    kind = models.CharField(max_length=63)
    namespace = models.CharField(max_length=63, default=DEFAULT_NAMESPACE)
    name = models.CharField(max_length=63)
    ref_key = models.CharField(max_length=200, unique=True, editable=False)
    title = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    spec_type = models.CharField(max_length=255, blank=True)
    owner = models.CharField(max_length=255, blank=True)
    lifecycle = models.CharField(max_length=255, blank=True)
    system = models.CharField(max_length=255, blank=True)
    tags = DocumentJSONField(default=list, blank=True)
    labels = DocumentJSONField(default=dict, blank=True)
    annotations = DocumentJSONField(default=dict, blank=True)
    links = DocumentJSONField(default=list, blank=True)
    # Other metadata keys a document carries (Backstage keeps unknown metadata fields).
    metadata_extra = DocumentJSONField(default=dict, blank=True)
    spec = DocumentJSONField(default=dict, blank=True)
    integration_links = DocumentJSONField(default=list, blank=True, editable=False)
    integration_properties = DocumentJSONField(default=dict, blank=True, editable=False)
    scope = models.ForeignKey(
        Scope, null=True, blank=True, on_delete=models.PROTECT, related_name="entities"
    )
    # The registered location that emits the entity, if one does (catalog.locations).
    location = models.ForeignKey(
        Location, null=True, blank=True, on_delete=models.SET_NULL, related_name="entities"
    )
    # Backstage's ``status.items``: why the entity's source failed to refresh it, written by
    # whoever refreshes it (a location, an integration) and cleared by its next success.
    status_items = DocumentJSONField(default=list, blank=True, editable=False)
    etag = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["ref_key"]
        verbose_name_plural = "entities"
        indexes = [
            models.Index(fields=["kind", "ref_key"], name="catalog_entity_kind_ref"),
            # by-query's orderField=metadata.name (what Backstage's catalog table asks for).
            models.Index(Lower("name"), name="catalog_entity_name_lower"),
            models.Index(fields=["spec_type"], name="catalog_entity_spec_type"),
            models.Index(fields=["owner"], name="catalog_entity_owner"),
            models.Index(fields=["updated_at"], name="catalog_entity_updated"),
        ]

    def __str__(self) -> str:
        return self.ref

    def save(self, *args, **kwargs):
        self.ref_key = ref_key(self.kind, self.namespace, self.name)
        if not self.etag:
            self.etag = uuid.uuid4().hex
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse(
            "catalog-api:entity-by-name",
            kwargs={"kind": self.kind.lower(), "namespace": self.namespace, "name": self.name},
        )

    @property
    def ref(self) -> str:
        return stringify_entity_ref(self.kind, self.namespace, self.name)


class Relation(models.Model):
    """A directed relation, stored as Backstage stores them.

    Each declared relation produces two rows (forward and inverse), both owned by the entity
    whose document declared it (``originating_entity``), so rewriting that entity replaces exactly
    its rows and the inverse on the other side stays in step.
    """

    originating_entity = models.ForeignKey(
        Entity, on_delete=models.CASCADE, related_name="originated_relations"
    )
    source_key = models.CharField(max_length=200)
    type = models.CharField(max_length=64)
    target_ref = models.CharField(max_length=255)
    target_key = models.CharField(max_length=255)

    class Meta:
        ordering = ["source_key", "type", "target_key"]
        indexes = [
            models.Index(fields=["source_key", "type"], name="catalog_rel_source"),
            models.Index(fields=["target_key"], name="catalog_rel_target"),
        ]

    def __str__(self) -> str:
        return f"{self.source_key} {self.type} {self.target_ref}"


class EntitySearch(models.Model):
    """The flattened, lower-cased (key, value) rows every filter is answered from."""

    # No index of its own: catalog_search_entity_key (entity, key) serves every lookup by entity,
    # and a sync writes some 37 search rows per entity through each index there is.
    entity = models.ForeignKey(
        Entity, on_delete=models.CASCADE, related_name="search_rows", db_index=False
    )
    key = models.CharField(max_length=200)
    value = models.CharField(max_length=200, null=True)  # noqa: DJ001 - null: too long to index
    original_value = models.CharField(max_length=200, null=True)  # noqa: DJ001 - as value

    class Meta:
        indexes = [
            models.Index(fields=["key", "value", "entity"], name="catalog_search_key_value"),
            models.Index(fields=["entity", "key"], name="catalog_search_entity_key"),
            # Facets: the values of one key in their original case, counted per entity, read
            # from the index alone.
            models.Index(
                fields=["key", "original_value", "entity"], name="catalog_search_key_original"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key}={self.value}"
