"""``import_catalog`` and ``export_catalog``: lossless round trips, all-or-nothing imports."""

import textwrap

import pytest
import yaml
from django.core.management.base import CommandError

from catalog.models import Entity, Relation
from catalog.refs import ref_key

ORG = """\
apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: engineering
  title: Engineering
  description: Everyone who builds the product.
spec:
  type: department
  profile:
    displayName: Engineering
    email: engineering@example.com
  children: [team-payments]
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: team-payments
  title: Payments team
spec:
  type: team
  parent: engineering
  children: []
  members: [ada]
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata:
  name: ada
  annotations:
    example.com/slack-handle: "@ada"
spec:
  profile:
    displayName: Ada Lovelace
    email: ada@example.com
    picture: https://example.com/staff/ada.jpeg
  memberOf: [team-payments]
"""

SYSTEMS = """\
apiVersion: backstage.io/v1alpha1
kind: Domain
metadata:
  name: payments
  title: Payments
  description: Everything that moves money.
  tags: [finance]
spec:
  owner: group:default/team-payments
---
apiVersion: backstage.io/v1alpha1
kind: System
metadata:
  name: checkout
  description: Basket, payment and order confirmation.
  labels:
    tier: "1"
  links:
    - url: https://example.com/dashboards/checkout
      title: Dashboard
      icon: dashboard
      type: grafana
spec:
  owner: team-payments
  domain: payments
"""

CHECKOUT = """\
# The checkout service, its API and its database.
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: checkout-service
  title: Checkout service
  description: |
    Takes a basket and turns it into an order.

    Owns the order state machine; see the runbook before touching it.
  tags: [java, spring-boot, c++]
  labels:
    tier: backend
    example.com/cost-center: cc-1234
  annotations:
    backstage.io/techdocs-ref: dir:.
    github.com/project-slug: example/checkout-service
    example.com/on-call: "yes"
    example.com/notes: "Line one\\nLine two: with a colon\\n"
  links:
    - url: https://example.com/runbooks/checkout
      title: Runbook
      icon: docs
spec:
  type: service
  lifecycle: production
  owner: team-payments
  system: checkout
  providesApis: [checkout-api]
  consumesApis: [api:finance/ledger-api]
  dependsOn:
    - resource:checkout-db
    - component:finance/ledger
  replicas: 3
  public: false
---
apiVersion: backstage.io/v1alpha1
kind: API
metadata:
  name: checkout-api
  description: Create and query orders.
  tags: [rest]
spec:
  type: openapi
  lifecycle: production
  owner: team-payments
  system: checkout
  definition: |
    openapi: 3.0.0
    info:
      title: Checkout API
      version: 1.0.0
    paths:
      /orders:
        post:
          summary: Create an order
---
apiVersion: backstage.io/v1alpha1
kind: Resource
metadata:
  name: checkout-db
  description: PostgreSQL database of the checkout service.
spec:
  type: database
  owner: team-payments
  system: checkout
  dependencyOf: [component:checkout-service]
"""

LEDGER = """\
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: ledger
  namespace: finance
  title: Ledger
  description: Double-entry book of every payment — in € and £ too.
spec:
  type: service
  lifecycle: experimental
  owner: group:default/team-payments
  system: system:default/checkout
  providesApis: [ledger-api]
---
apiVersion: backstage.io/v1alpha1
kind: API
metadata:
  name: ledger-api
  namespace: finance
spec:
  type: grpc
  lifecycle: experimental
  owner: group:default/team-payments
  definition: 'syntax = "proto3"; service Ledger {}'
"""

LOCATION = """\
apiVersion: backstage.io/v1alpha1
kind: Location
metadata:
  name: example-catalog
  description: Where the example entities live.
spec:
  type: url
  targets:
    - https://example.com/catalog/org.yaml
    - https://example.com/catalog/systems.yaml
"""

EXAMPLE_FILES = {
    "org/org.yaml": ORG,
    "systems.yml": SYSTEMS,
    "services/checkout/catalog-info.yaml": CHECKOUT,
    "services/ledger/catalog-info.yaml": LEDGER,
    "locations/all.yaml": LOCATION,
    "services/README.md": "# not a catalog file: kind: Component\n",
}


def doc_ref(document: dict) -> str:
    metadata = document["metadata"]
    return ref_key(document["kind"], metadata.get("namespace", "default"), metadata["name"])


def normalised(document: dict) -> dict:
    """The only normalisation allowed: export omits ``metadata.namespace: default``."""
    if document["metadata"].get("namespace") == "default":
        document = {**document, "metadata": dict(document["metadata"])}
        del document["metadata"]["namespace"]
    return document


def example_documents() -> list[dict]:
    return [
        doc
        for name, text in EXAMPLE_FILES.items()
        if name.endswith((".yaml", ".yml"))
        for doc in yaml.safe_load_all(text)
    ]


@pytest.fixture
def examples(write_file, tmp_path):
    """The example files under ``tmp_path/catalog``; returns that directory."""
    for name, text in EXAMPLE_FILES.items():
        write_file(f"catalog/{name}", text)
    return tmp_path / "catalog"


def test_example_set_covers_every_built_in_kind_and_a_second_namespace():
    documents = example_documents()

    assert {d["kind"] for d in documents} == {
        "Component",
        "API",
        "System",
        "Domain",
        "Resource",
        "Group",
        "User",
        "Location",
    }
    assert {d["metadata"].get("namespace", "default") for d in documents} == {"default", "finance"}


def test_importing_a_directory_walks_it_for_yaml_files(examples, import_catalog):
    output = import_catalog(examples)

    assert output.strip() == "Imported 11 entities: 11 created, 0 updated, 0 unchanged."
    assert set(Entity.objects.values_list("ref_key", flat=True)) == {
        doc_ref(d) for d in example_documents()
    }


def test_export_reproduces_every_imported_document(examples, import_catalog, export_catalog):
    import_catalog(examples)

    exported = list(yaml.safe_load_all(export_catalog()))

    by_ref = {doc_ref(d): normalised(d) for d in example_documents()}
    assert [doc_ref(d) for d in exported] == sorted(by_ref)
    for document in exported:
        assert document == by_ref[doc_ref(document)], doc_ref(document)


def test_export_keeps_multi_line_strings_as_literal_blocks(
    examples, import_catalog, export_catalog
):
    import_catalog(examples)

    text = export_catalog("--kind", "API")

    assert "  definition: |\n    openapi: 3.0.0\n    info:\n      title: Checkout API\n" in text
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(text)] == [
        "checkout-api",
        "ledger-api",
    ]


def test_export_to_a_file_writes_the_same_stream(
    examples, tmp_path, import_catalog, export_catalog
):
    import_catalog(examples)
    target = tmp_path / "export.yaml"

    assert export_catalog("-o", str(target)) == ""
    assert target.read_text(encoding="utf-8") == export_catalog()


def test_reimporting_the_export_changes_nothing(
    examples, write_file, import_catalog, export_catalog, catalog_snapshot
):
    import_catalog(examples)
    before = catalog_snapshot()
    exported = write_file("export/catalog.yaml", export_catalog())

    output = import_catalog(exported)

    assert output.strip() == "Imported 11 entities: 0 created, 0 updated, 11 unchanged."
    assert catalog_snapshot() == before


def test_importing_the_same_files_twice_keeps_uids_and_etags(
    examples, import_catalog, catalog_snapshot
):
    import_catalog(examples)
    before = catalog_snapshot()

    assert "11 unchanged" in import_catalog(examples)
    assert catalog_snapshot() == before


def test_changing_one_document_updates_only_that_entity(
    examples, write_file, import_catalog, catalog_snapshot
):
    import_catalog(examples)
    before = catalog_snapshot()["entities"]
    write_file("catalog/locations/all.yaml", LOCATION.replace("Where the example", "Where example"))

    assert "0 created, 1 updated, 10 unchanged" in import_catalog(examples)
    after = catalog_snapshot()["entities"]
    location = "location:default/example-catalog"
    assert {ref for ref in after if after[ref] != before[ref]} == {location}
    assert after[location]["uid"] == before[location]["uid"]
    assert after[location]["etag"] != before[location]["etag"]


@pytest.mark.parametrize(
    ("kind", "name"), [("Component", "Foo"), ("component", "foo"), ("COMPONENT", "FOO")]
)
def test_upsert_by_ref_is_case_insensitive(kind, name, write_file, import_catalog):
    import_catalog(write_file("a.yaml", component_yaml("foo", "First.")))
    entity = Entity.objects.get()

    output = import_catalog(write_file("b.yaml", component_yaml(name, "Second.", kind=kind)))

    assert "0 created, 1 updated, 0 unchanged" in output
    updated = Entity.objects.get()
    assert (updated.pk, updated.uid, updated.ref_key) == (entity.pk, entity.uid, entity.ref_key)
    assert (updated.kind, updated.name, updated.description) == (kind, name, "Second.")
    assert updated.etag != entity.etag
    assert set(Relation.objects.values_list("source_key", flat=True)) == {
        "component:default/foo",
        "group:default/team-a",
    }


def component_yaml(name: str, description: str, kind: str = "Component", **spec) -> str:
    spec = {"type": "service", "lifecycle": "production", "owner": "team-a", **spec}
    return yaml.safe_dump(
        {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name, "description": description},
            "spec": spec,
        },
        sort_keys=False,
    )


# Invalid input: refused with the file, position and field, and nothing written -------------------

VALID_FIRST = textwrap.dedent(
    """\
    apiVersion: backstage.io/v1alpha1
    kind: Component
    metadata:
      name: brand-new
    spec:
      type: service
      lifecycle: production
      owner: team-payments
    ---
    apiVersion: backstage.io/v1alpha1
    kind: Location
    metadata:
      name: example-catalog
      description: Changed, but must not be written.
    spec:
      type: url
      target: https://example.com/catalog.yaml
    ---
    """
)
# The document appended after VALID_FIRST is document 3 and starts on this line.
THIRD_LINE = VALID_FIRST.count("\n") + 1

INVALID_CASES = {
    "bad name": (
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: bad name!\n"
        "spec: {type: service, lifecycle: production, owner: team-payments}\n",
        [f"document 3 (line {THIRD_LINE})", "metadata.name", "'bad name!' is not a valid name"],
    ),
    "missing owner": (
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: no-owner\n"
        "spec:\n  type: service\n  lifecycle: production\n",
        [f"document 3 (line {THIRD_LINE})", "spec.owner: is required"],
    ),
    "not a mapping": (
        "- apiVersion: backstage.io/v1alpha1\n- kind: Component\n",
        [f"document 3 (line {THIRD_LINE})", "an entity must be a mapping"],
    ),
    "duplicate ref": (
        "apiVersion: backstage.io/v1alpha1\nkind: component\nmetadata:\n  name: Brand-New\n"
        "spec: {type: library, lifecycle: production, owner: team-payments}\n",
        [
            f"document 3 (line {THIRD_LINE})",
            "metadata.name",
            "duplicate entity component:default/brand-new",
        ],
    ),
    "invalid YAML": (
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n"
        "  name: broken\n  description: a: b\n",
        [f"line {THIRD_LINE + 4}, column 17", "invalid YAML", "mapping values are not allowed"],
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID_CASES))
def test_an_invalid_document_after_valid_ones_refuses_the_whole_import(
    case, examples, write_file, import_catalog, catalog_snapshot
):
    import_catalog(examples)
    before = catalog_snapshot()
    text, fragments = INVALID_CASES[case]
    path = write_file("incoming/catalog-info.yaml", VALID_FIRST + text)

    with pytest.raises(CommandError) as raised:
        import_catalog(path)

    message = str(raised.value)
    assert message.startswith(f"Nothing imported. {path}: ") or message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message
    assert catalog_snapshot() == before


def test_an_invalid_document_in_a_later_file_refuses_every_file(
    write_file, import_catalog, catalog_snapshot
):
    write_file("batch/a.yaml", VALID_FIRST.removesuffix("---\n"))
    bad = write_file(
        "batch/b.yaml",
        component_yaml("ok-one", "Fine.") + "---\n" + component_yaml("x", "", owner=""),
    )

    with pytest.raises(CommandError, match=r"b\.yaml: document 2 \(line 11\): spec\.owner"):
        import_catalog(bad.parent)

    assert catalog_snapshot() == {"entities": {}, "relations": [], "search": []}


def test_every_problem_of_the_refused_document_is_named(write_file, import_catalog):
    path = write_file("bad.yaml", component_yaml("-bad-", "", owner="", lifecycle=""))

    with pytest.raises(CommandError) as raised:
        import_catalog(path)

    assert str(raised.value) == (
        f"Nothing imported. {path}: document 1 (line 1): metadata.name: '-bad-' is not a valid "
        "name: use letters, digits, '-', '_' and '.', starting and ending with a letter or digit; "
        "spec.lifecycle: is required and must be a non-empty string; "
        "spec.owner: is required and must be a non-empty string"
    )


def test_a_missing_path_is_refused(tmp_path, import_catalog):
    with pytest.raises(CommandError, match="no such file or directory"):
        import_catalog(tmp_path / "missing.yaml")


def test_a_directory_without_entity_documents_is_refused(write_file, import_catalog):
    empty = write_file("empty/catalog-info.yaml", "# nothing yet\n---\n")

    with pytest.raises(CommandError, match="No entity documents found"):
        import_catalog(empty.parent)


# Known gaps -------------------------------------------------------------------------------------


def test_an_unquoted_date_in_spec_is_imported_as_a_string(write_file, import_catalog):
    path = write_file(
        "dated.yaml", component_yaml("dated", "Has a date.") + "  since: 2021-03-01\n"
    )

    import_catalog(path)

    assert Entity.objects.get().spec["since"] == "2021-03-01"


def test_extra_metadata_fields_survive_the_round_trip(write_file, import_catalog, export_catalog):
    text = component_yaml("custom", "Has an extra field.").replace(
        "  description:", "  costCenter: cc-1234\n  description:"
    )
    import_catalog(write_file("custom.yaml", text))

    (exported,) = yaml.safe_load_all(export_catalog())

    assert exported == yaml.safe_load(text)
