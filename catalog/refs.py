"""Entity references, parsed and rendered the way Backstage's ``@backstage/catalog-model`` does.

``kind:namespace/name`` where kind and namespace may be omitted when the context supplies defaults.
Stringified refs are lower-cased entirely, as ``stringifyEntityRef`` does, because Backstage
compares refs case-insensitively everywhere.
"""

from dataclasses import dataclass

DEFAULT_NAMESPACE = "default"


class EntityRefError(ValueError):
    """A string that is not a valid entity reference."""


@dataclass(frozen=True)
class EntityRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return self.key

    @property
    def key(self) -> str:
        return stringify_entity_ref(self.kind, self.namespace, self.name)


def stringify_entity_ref(kind: str, namespace: str, name: str) -> str:
    return f"{kind}:{namespace or DEFAULT_NAMESPACE}/{name}".lower()


# The case-insensitive identity of an entity: what uniqueness and lookups use.
ref_key = stringify_entity_ref


def parse_entity_ref(
    ref: str,
    *,
    default_kind: str | None = None,
    default_namespace: str = DEFAULT_NAMESPACE,
) -> EntityRef:
    if not isinstance(ref, str) or not ref.strip():
        raise EntityRefError("Entity reference must be a non-empty string")
    ref = ref.strip()
    kind: str | None
    rest: str
    colon, slash = ref.find(":"), ref.find("/")
    if colon != -1 and (slash == -1 or colon < slash):
        kind, rest = ref.split(":", 1)
        if not kind:
            raise EntityRefError(f"Entity reference {ref!r} has an empty kind")
    else:
        kind, rest = None, ref
    if "/" in rest:
        namespace, name = rest.split("/", 1)
        if not namespace:
            raise EntityRefError(f"Entity reference {ref!r} has an empty namespace")
    else:
        namespace, name = default_namespace, rest
    if not name:
        raise EntityRefError(f"Entity reference {ref!r} has an empty name")
    if ":" in name or "/" in name:
        raise EntityRefError(
            f"Entity reference {ref!r} is malformed: expected [<kind>:][<namespace>/]<name>"
        )
    if kind is None:
        if not default_kind:
            raise EntityRefError(
                f"Entity reference {ref!r} had no kind and no default kind was given"
            )
        kind = default_kind
    return EntityRef(kind=kind, namespace=namespace or DEFAULT_NAMESPACE, name=name)
