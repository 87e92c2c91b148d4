"""Validation of entity documents by Backstage's rules.

Every problem is reported with the dotted path of the offending field, so import errors and the
``validate-entity`` endpoint can say exactly what is wrong.
"""

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from catalog.refs import EntityRefError, parse_entity_ref

NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
NAMESPACE_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
KIND_RE = re.compile(r"^[a-zA-Z][a-z0-9A-Z]*$")
API_VERSION_RE = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)*/[a-z0-9]+$")
TAG_RE = re.compile(r"^[a-z0-9:+#]+(-[a-z0-9:+#]+)*$")
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
MAX_NAME_LENGTH = 63

KNOWN_KINDS = ("Component", "API", "System", "Domain", "Resource", "Group", "User", "Location")

# Required string fields under ``spec`` per kind, as in Backstage's JSON schemas.
REQUIRED_SPEC_STRINGS: dict[str, tuple[str, ...]] = {
    "component": ("type", "lifecycle", "owner"),
    "api": ("type", "lifecycle", "owner", "definition"),
    "system": ("owner",),
    "domain": ("owner",),
    "resource": ("type", "owner"),
    "group": ("type",),
}
# Required list fields under ``spec`` per kind (they may be empty).
REQUIRED_SPEC_LISTS: dict[str, tuple[str, ...]] = {"group": ("children",), "user": ("memberOf",)}
STRING_LIST_SPEC_FIELDS = (
    "dependsOn",
    "dependencyOf",
    "providesApis",
    "consumesApis",
    "memberOf",
    "children",
    "targets",
)


@dataclass(frozen=True)
class ValidationIssue:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class EntityValidationError(ValueError):
    def __init__(self, issues: list[ValidationIssue]):
        self.issues = issues
        super().__init__("; ".join(str(issue) for issue in issues))


def name_errors(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > MAX_NAME_LENGTH:
        return f"{value!r} is longer than {MAX_NAME_LENGTH} characters"
    if not NAME_RE.fullmatch(value):
        return (
            f"{value!r} is not a valid name: use letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit"
        )
    return None


def is_valid_name(value: Any) -> bool:
    return name_errors(value) is None


def _namespace_error(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > MAX_NAME_LENGTH or not NAMESPACE_RE.fullmatch(value):
        return f"{value!r} is not a valid namespace: lower-case DNS label, at most 63 characters"
    return None


def _kind_error(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > MAX_NAME_LENGTH or not KIND_RE.fullmatch(value):
        return f"{value!r} is not a valid kind: a letter followed by letters and digits"
    return None


def _key_error(key: Any) -> str | None:
    """Label and annotation keys: optional DNS-subdomain prefix, then a name."""
    if not isinstance(key, str) or not key:
        return "keys must be non-empty strings"
    parts = key.split("/")
    if len(parts) > 2:
        return f"key {key!r} may contain at most one '/'"
    prefix, name = parts if len(parts) == 2 else ("", parts[0])
    if len(parts) == 2 and (
        not prefix or len(prefix) > 253 or not DNS_SUBDOMAIN_RE.fullmatch(prefix)
    ):
        return f"key {key!r} has an invalid prefix {prefix!r}"
    if name_errors(name):
        return f"key {key!r} is not valid"
    return None


def validate_entity_document(doc: Any) -> list[ValidationIssue]:
    """Every problem with an entity document; an empty list means valid."""
    issues: list[ValidationIssue] = []

    def add(path: str, message: str) -> None:
        issues.append(ValidationIssue(path, message))

    if not isinstance(doc, dict):
        return [ValidationIssue("", "an entity must be a mapping (object)")]
    api_version = doc.get("apiVersion")
    if not isinstance(api_version, str) or not API_VERSION_RE.fullmatch(api_version):
        add("apiVersion", "must be a string like 'backstage.io/v1alpha1'")
    kind = doc.get("kind")
    if error := _kind_error(kind):
        add("kind", error)
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        add("metadata", "must be a mapping")
        metadata = {}
    if error := name_errors(metadata.get("name")):
        add("metadata.name", error)
    if "namespace" in metadata and (error := _namespace_error(metadata["namespace"])):
        add("metadata.namespace", error)
    for field in ("title", "description"):
        if (
            field in metadata
            and metadata[field] is not None
            and not isinstance(metadata[field], str)
        ):
            add(f"metadata.{field}", "must be a string")
    tags = metadata.get("tags", [])
    if not isinstance(tags, list):
        add("metadata.tags", "must be a list of strings")
    else:
        for index, tag in enumerate(tags):
            if not isinstance(tag, str) or len(tag) > MAX_NAME_LENGTH or not TAG_RE.fullmatch(tag):
                add(
                    f"metadata.tags[{index}]",
                    f"{tag!r} is not a valid tag: lower-case letters, digits, ':', '+', '#' "
                    "separated by '-', at most 63 characters",
                )
    for field in ("labels", "annotations"):
        mapping = metadata.get(field, {})
        if not isinstance(mapping, dict):
            add(f"metadata.{field}", "must be a mapping of strings")
            continue
        for key, value in mapping.items():
            if error := _key_error(key):
                add(f"metadata.{field}", error)
            if not isinstance(value, str):
                add(f"metadata.{field}.{key}", "must be a string")
            elif field == "labels" and (
                len(value) > MAX_NAME_LENGTH or not LABEL_VALUE_RE.fullmatch(value)
            ):
                add(f"metadata.{field}.{key}", f"{value!r} is not a valid label value")
    links = metadata.get("links", [])
    if not isinstance(links, list):
        add("metadata.links", "must be a list")
    else:
        for index, link in enumerate(links):
            if (
                not isinstance(link, dict)
                or not isinstance(link.get("url"), str)
                or not link["url"]
            ):
                add(f"metadata.links[{index}].url", "each link needs a non-empty string url")
    spec = doc.get("spec", {})
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        add("spec", "must be a mapping")
        spec = {}
    if isinstance(kind, str):
        issues.extend(_spec_issues(kind.lower(), spec))
    return issues


def _spec_issues(kind: str, spec: dict) -> list[ValidationIssue]:
    issues = []
    for field in REQUIRED_SPEC_STRINGS.get(kind, ()):
        value = spec.get(field)
        if not isinstance(value, str) or not value.strip():
            issues.append(
                ValidationIssue(f"spec.{field}", "is required and must be a non-empty string")
            )
    for field in STRING_LIST_SPEC_FIELDS:
        if field in spec:
            value = spec[field]
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                issues.append(ValidationIssue(f"spec.{field}", "must be a list of strings"))
    for required_list in REQUIRED_SPEC_LISTS.get(kind, ()):
        if required_list not in spec:
            issues.append(
                ValidationIssue(f"spec.{required_list}", "is required (a list, possibly empty)")
            )
    if kind == "location" and not (spec.get("target") or spec.get("targets")):
        issues.append(ValidationIssue("spec.target", "a Location needs target or targets"))
    for field in ("dependsOn", "dependencyOf"):
        values = spec.get(field)
        for index, value in enumerate(values if isinstance(values, list) else []):
            if isinstance(value, str) and value:
                try:
                    parse_entity_ref(value)
                except EntityRefError as exc:
                    issues.append(ValidationIssue(f"spec.{field}[{index}]", str(exc)))
    for field in ("owner", "system", "domain", "parent", "subcomponentOf"):
        value = spec.get(field)
        if isinstance(value, str) and value:
            try:
                parse_entity_ref(value, default_kind="Group")
            except EntityRefError as exc:
                issues.append(ValidationIssue(f"spec.{field}", str(exc)))
    return issues


def validate_or_raise(doc: Any) -> None:
    issues = validate_entity_document(doc)
    if issues:
        raise EntityValidationError(issues)


# -- Valid values from arbitrary text ------------------------------------------------------------
# Field mappings derive names, label values and tags from whatever a source holds (personal
# project keys like ``~jdoe``, unicode, spaces, 100-character names). These turn any text into a
# value Backstage accepts: a valid value is returned as it is (so they are idempotent), and the
# same text always gives the same value. What had to be cut or dropped to fit gets a short hash
# of the original, so two different long or non-Latin names stay two different names.

HASH_LENGTH = 8
_NAME_CHARS_RE = re.compile(r"[^A-Za-z0-9_.-]+")
_NAME_ENDS_RE = re.compile(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$")
_TAG_CHARS_RE = re.compile(r"[^a-z0-9:+#]+")


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        value = str(value)
    return value.strip() if isinstance(value, str) else None


def _fold(text: str) -> tuple[str, bool]:
    """Latin letters without their accents (``Déjà`` → ``Deja``), and whether characters with
    no such form (CJK, emoji, ``ß``…) were left out."""
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(char for char in decomposed if not unicodedata.combining(char))
    ascii_text = kept.encode("ascii", "ignore").decode("ascii")
    return ascii_text, len(ascii_text) != len(kept)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def as_entity_name(value: Any) -> str | None:
    """A valid entity name (and label value) from any text; ``None`` when there is none.

    ``~jdoe`` → ``jdoe``, ``My Repo`` → ``My-Repo``, ``Café`` → ``Cafe``; ``日本語`` →
    ``4f1c9a2e`` (its hash); a 100-character name → its first 54 characters, ``-`` and the
    hash of the whole."""
    text = _text(value)
    if not text:
        return None
    if is_valid_name(text):
        return text
    folded, lost = _fold(text)
    name = _NAME_ENDS_RE.sub("", _NAME_CHARS_RE.sub("-", folded))
    if not lost and name and len(name) <= MAX_NAME_LENGTH:
        return name
    keep = MAX_NAME_LENGTH - HASH_LENGTH - 1
    name = _NAME_ENDS_RE.sub("", name[:keep])
    return f"{name}-{_digest(text)}" if name else _digest(text)


def as_label_value(value: Any) -> str | None:
    """A valid label value from any text: as :func:`as_entity_name`, and empty text stays
    empty (a label value may be empty); ``None`` for no value."""
    text = _text(value)
    if text is None:
        return None
    return as_entity_name(text) if text else ""


def as_tag(value: Any) -> str | None:
    """A valid tag from any text (``Visual Basic`` → ``visual-basic``), ``None`` when nothing
    valid is left (a tag of unicode only)."""
    text = _text(value)
    if not text:
        return None
    folded, _ = _fold(text.lower())
    tag = _TAG_CHARS_RE.sub("-", folded.lower()).strip("-")
    return tag[:MAX_NAME_LENGTH].rstrip("-") or None


def as_tags(values: Any) -> list[str]:
    """Valid tags from a list (or one text), each once, in order; what cannot be one is left
    out."""
    items = values if isinstance(values, list) else [values]
    tags: list[str] = []
    for item in items:
        tag = as_tag(item)
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def _entity_ref_error(value: Any) -> str | None:
    try:
        ref = parse_entity_ref(value, default_kind="Group")
    except EntityRefError as exc:
        return str(exc)
    return _kind_error(ref.kind) or _namespace_error(ref.namespace) or name_errors(ref.name)


def _label_value_error(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if len(value) > MAX_NAME_LENGTH or not LABEL_VALUE_RE.fullmatch(value):
        return f"{value!r} is not a valid label value"
    return None


def _tag_error(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > MAX_NAME_LENGTH or not TAG_RE.fullmatch(value):
        return f"{value!r} is not a valid tag"
    return None


def _string_error(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "must be a non-empty string"


# The rules a value can be checked against (``value_error(rule, value)``).
VALUE_RULES = {
    "entity_name": name_errors,
    "label_value": _label_value_error,
    "tag": _tag_error,
    "entity_ref": _entity_ref_error,
    "string": _string_error,
}


def value_error(rule: str, value: Any) -> str | None:
    """Why ``value`` breaks ``rule`` (one of :data:`VALUE_RULES`), or ``None``."""
    return VALUE_RULES[rule](value)
