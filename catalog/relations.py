"""Relations implied by an entity's spec, as Backstage's built-in processor emits them."""

from dataclasses import dataclass

from catalog.refs import EntityRef, EntityRefError, parse_entity_ref

INVERSE = {
    "ownedBy": "ownerOf",
    "partOf": "hasPart",
    "dependsOn": "dependencyOf",
    "providesApi": "apiProvidedBy",
    "consumesApi": "apiConsumedBy",
    "memberOf": "hasMember",
    "childOf": "parentOf",
}
INVERSE.update({inverse: forward for forward, inverse in list(INVERSE.items())})
RELATION_TYPES = tuple(sorted(INVERSE))

# (spec field, default target kind or None when the ref must name it, relation type, kinds it
# applies to or None for any kind)
_SPEC_RELATIONS: tuple[tuple[str, str | None, str, tuple[str, ...] | None], ...] = (
    ("owner", "Group", "ownedBy", None),
    ("system", "System", "partOf", ("component", "api", "resource")),
    ("domain", "Domain", "partOf", ("system",)),
    ("subcomponentOf", "Component", "partOf", ("component",)),
    ("dependsOn", None, "dependsOn", None),
    ("dependencyOf", None, "dependencyOf", None),
    ("providesApis", "API", "providesApi", ("component",)),
    ("consumesApis", "API", "consumesApi", ("component",)),
    ("memberOf", "Group", "memberOf", ("user",)),
    ("parent", "Group", "childOf", ("group",)),
    ("children", "Group", "parentOf", ("group",)),
    ("members", "User", "hasMember", ("group",)),
)


@dataclass(frozen=True)
class DeclaredRelation:
    type: str
    target: EntityRef


def declared_relations(kind: str, namespace: str, spec: dict) -> list[DeclaredRelation]:
    """Forward relations declared by an entity's spec; unparseable refs are skipped."""
    kind = kind.lower()
    relations: list[DeclaredRelation] = []
    seen: set[tuple[str, str]] = set()
    for field, default_kind, relation_type, kinds in _SPEC_RELATIONS:
        if kinds is not None and kind not in kinds:
            continue
        value = spec.get(field)
        values = value if isinstance(value, list) else [value]
        for raw in values:
            if not isinstance(raw, str) or not raw:
                continue
            try:
                target = parse_entity_ref(
                    raw, default_kind=default_kind, default_namespace=namespace
                )
            except EntityRefError:
                continue
            identity = (relation_type, target.key)
            if identity not in seen:
                seen.add(identity)
                relations.append(DeclaredRelation(relation_type, target))
    return relations
