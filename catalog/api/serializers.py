"""Request bodies of the catalog API, validated; responses are documented as plain objects
because entity documents are open-ended (any kind, any spec)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers

from catalog.selectors import document_sections
from portal.api import ERROR_NAMES

# Largest limit or offset accepted (a 32-bit integer; larger offsets would overflow the query).
MAX_INTEGER = 2**31 - 1


@extend_schema_field(OpenApiTypes.OBJECT)
class JSONObjectField(serializers.JSONField):
    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("Expected an object.")
        return super().to_internal_value(data)


class EntityMetadataSerializer(serializers.Serializer):
    name = serializers.CharField()
    namespace = serializers.CharField(required=False)
    uid = serializers.CharField(required=False)
    etag = serializers.CharField(required=False)
    title = serializers.CharField(required=False)
    description = serializers.CharField(required=False)
    labels = serializers.DictField(child=serializers.CharField(), required=False)
    annotations = serializers.DictField(child=serializers.CharField(), required=False)
    tags = serializers.ListField(child=serializers.CharField(), required=False)
    links = serializers.ListField(child=JSONObjectField(), required=False)


class EntityRelationSerializer(serializers.Serializer):
    type = serializers.CharField()
    targetRef = serializers.CharField()


class EntitySerializer(serializers.Serializer):
    """A Backstage entity document (documentation only)."""

    apiVersion = serializers.CharField()
    kind = serializers.CharField()
    metadata = EntityMetadataSerializer()
    spec = JSONObjectField(required=False)
    relations = EntityRelationSerializer(many=True, required=False)
    integration_properties = JSONObjectField(required=False)

    def get_fields(self):
        """The envelope, then the sections other apps add (see
        :class:`catalog.selectors.DocumentSection`): known only once the apps are ready."""
        fields = super().get_fields()
        for section in document_sections():
            fields[section.key] = section.schema()
        return fields


class PartialEntityMetadataSerializer(EntityMetadataSerializer):
    name = serializers.CharField(required=False)


class PartialEntitySerializer(EntitySerializer):
    """An entity document in a list: with ``fields``, only the requested paths are present
    (documentation only)."""

    apiVersion = serializers.CharField(required=False)
    kind = serializers.CharField(required=False)
    metadata = PartialEntityMetadataSerializer(required=False)


class PageInfoSerializer(serializers.Serializer):
    nextCursor = serializers.CharField(required=False)
    prevCursor = serializers.CharField(required=False)


class EntityQueryResponseSerializer(serializers.Serializer):
    items = PartialEntitySerializer(many=True)
    totalItems = serializers.IntegerField()
    pageInfo = PageInfoSerializer()


class OrderBySerializer(serializers.Serializer):
    field = serializers.CharField()
    order = serializers.ChoiceField(choices=["asc", "desc"], default="asc")


class FullTextFilterSerializer(serializers.Serializer):
    term = serializers.CharField(allow_blank=True, required=False, default="")
    fields = serializers.ListField(child=serializers.CharField(), required=False, default=list)


class EntityQueryRequestSerializer(serializers.Serializer):
    query = JSONObjectField(required=False)
    fields = serializers.ListField(child=serializers.CharField(), required=False)
    limit = serializers.IntegerField(min_value=0, max_value=MAX_INTEGER, required=False)
    offset = serializers.IntegerField(min_value=0, max_value=MAX_INTEGER, required=False)
    orderBy = OrderBySerializer(many=True, required=False)
    orderFields = OrderBySerializer(many=True, required=False)
    fullTextFilter = FullTextFilterSerializer(required=False)
    cursor = serializers.CharField(required=False)
    skipTotalItems = serializers.BooleanField(required=False, default=False)
    totalItems = serializers.ChoiceField(choices=["include", "exclude"], required=False)
    ownedByCurrentUser = serializers.BooleanField(required=False)

    def to_internal_value(self, data):
        # Clients send a single order object as well as a list.
        if isinstance(data, dict):
            data = dict(data)
            for key in ("orderBy", "orderFields"):
                if isinstance(data.get(key), dict):
                    data[key] = [data[key]]
        return super().to_internal_value(data)


class EntitiesByRefsRequestSerializer(serializers.Serializer):
    entityRefs = serializers.ListField(child=serializers.CharField(), allow_empty=True)
    fields = serializers.ListField(child=serializers.CharField(), required=False)
    query = JSONObjectField(required=False)


@extend_schema_field(PartialEntitySerializer(allow_null=True))
class EntityOrNullField(serializers.JSONField):
    """An entity document, or null (documentation only: ``many=True, allow_null=True`` would
    make the list nullable, not its items)."""


class EntitiesByRefsResponseSerializer(serializers.Serializer):
    # null in place of each ref that names no (visible) entity, in request order
    items = serializers.ListField(child=EntityOrNullField())


class FacetValueSerializer(serializers.Serializer):
    value = serializers.CharField()
    count = serializers.IntegerField()


class EntityFacetsResponseSerializer(serializers.Serializer):
    facets = serializers.DictField(child=FacetValueSerializer(many=True))


class EntityFacetsRequestSerializer(serializers.Serializer):
    facets = serializers.ListField(child=serializers.CharField(), allow_empty=False)
    query = JSONObjectField(required=False)


class AncestryItemSerializer(serializers.Serializer):
    entity = EntitySerializer()
    parentEntityRefs = serializers.ListField(child=serializers.CharField())


class AncestryResponseSerializer(serializers.Serializer):
    rootEntityRef = serializers.CharField()
    items = AncestryItemSerializer(many=True)


class RefreshRequestSerializer(serializers.Serializer):
    entityRef = serializers.CharField()
    authorizationToken = serializers.CharField(required=False)


class ValidateEntityRequestSerializer(serializers.Serializer):
    entity = serializers.JSONField()
    location = serializers.CharField(required=False, allow_blank=True)


class ValidationErrorItemSerializer(serializers.Serializer):
    name = serializers.CharField()
    message = serializers.CharField()


class ValidateEntityResponseSerializer(serializers.Serializer):
    errors = ValidationErrorItemSerializer(many=True)


class ErrorSerializer(serializers.Serializer):
    error = JSONObjectField()
    request = JSONObjectField()
    response = JSONObjectField()


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """The schema's error responses for these status codes, each in Backstage's error shape and
    described by its error name (406: the Accept header names no format the endpoint serves)."""
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_NAMES[code]) for code in codes}


# Any request may be refused as malformed (a NUL character in a parameter, say) or ask for a
# format the endpoint does not serve (406, where no fallback answers JSON), reads too.
REQUEST_ERRORS = error_responses(400, 401, 406)


# -- locations -----------------------------------------------------------------------------------


class LocationSpecSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["url", "file"], default="url")
    target = serializers.CharField(max_length=2000, trim_whitespace=False)


class LocationSerializer(serializers.Serializer):
    """A registered location as Backstage serves it (``entityRef``: its Location entity)."""

    id = serializers.CharField()
    type = serializers.CharField()
    target = serializers.CharField()
    entityRef = serializers.CharField()


class LocationItemSerializer(serializers.Serializer):
    data = LocationSerializer()


class LocationAddResponseSerializer(serializers.Serializer):
    location = LocationSerializer()
    # The entities the location would store: filled in a dry run only, as in Backstage.
    entities = EntitySerializer(many=True)
    exists = serializers.BooleanField(required=False)


class LocationQueryRequestSerializer(serializers.Serializer):
    query = JSONObjectField(required=False)
    limit = serializers.IntegerField(min_value=0, max_value=MAX_INTEGER, required=False)
    cursor = serializers.CharField(required=False)


class LocationQueryPageInfoSerializer(serializers.Serializer):
    nextCursor = serializers.CharField(required=False)


class LocationQueryResponseSerializer(serializers.Serializer):
    items = LocationSerializer(many=True)
    totalItems = serializers.IntegerField()
    pageInfo = LocationQueryPageInfoSerializer()


class AnalyzeLocationRequestSerializer(serializers.Serializer):
    location = LocationSpecSerializer()
    catalogFilename = serializers.CharField(required=False, max_length=255)


class AnalyzeExistingEntitySerializer(serializers.Serializer):
    location = LocationSpecSerializer()
    isRegistered = serializers.BooleanField()
    entity = EntitySerializer()


class AnalyzeEntityFieldSerializer(serializers.Serializer):
    field = serializers.CharField()
    state = serializers.ChoiceField(
        choices=["analysisSuggestedValue", "analysisSuggestedNoValue", "needsUserInput"]
    )
    value = serializers.CharField(allow_null=True)
    description = serializers.CharField()


class AnalyzeGeneratedEntitySerializer(serializers.Serializer):
    entity = JSONObjectField()
    fields = AnalyzeEntityFieldSerializer(many=True)


class AnalyzeLocationResponseSerializer(serializers.Serializer):
    existingEntityFiles = AnalyzeExistingEntitySerializer(many=True)
    generateEntities = AnalyzeGeneratedEntitySerializer(many=True)
