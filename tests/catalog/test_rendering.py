"""The rendered document of an entity: a golden file for one demo entity, and JSON/YAML parity."""

import json
from pathlib import Path

import pytest
import yaml

from catalog.models import Entity
from catalog.rendering import dump_yaml
from catalog.selectors import entity_documents

GOLDEN = Path(__file__).parent / "golden"
UID_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"
ETAG_PLACEHOLDER = "etag-placeholder"


def rendered(ref: str) -> dict:
    (document,) = entity_documents([Entity.objects.get(ref_key=ref)])
    return document


def stable(document: dict) -> dict:
    """The document with its generated uid and etag replaced by fixed placeholders."""
    metadata = {**document["metadata"], "uid": UID_PLACEHOLDER, "etag": ETAG_PLACEHOLDER}
    return {**document, "metadata": metadata}


def test_checkout_service_renders_as_the_golden_file(demo_catalog):
    text = dump_yaml(stable(rendered("component:default/checkout-service")))

    assert text == (GOLDEN / "checkout-service.yaml").read_text(encoding="utf-8")


def test_rendered_uid_and_etag_are_the_stored_ones(demo_catalog):
    entity = Entity.objects.get(ref_key="component:default/checkout-service")

    metadata = rendered(entity.ref_key)["metadata"]

    assert (metadata["uid"], metadata["etag"]) == (str(entity.uid), entity.etag)


def test_yaml_and_json_of_every_demo_document_carry_the_same_data(demo_catalog):
    documents = entity_documents(list(Entity.objects.all()))

    assert len(documents) == 15
    for document in documents:
        as_json = json.loads(json.dumps(document))
        assert as_json == document
        assert yaml.safe_load(dump_yaml(document)) == as_json


def test_a_list_of_documents_dumps_as_a_yaml_stream_in_order(demo_catalog):
    documents = entity_documents(list(Entity.objects.all()))

    stream = dump_yaml(documents)

    assert stream.startswith("---\n")
    assert list(yaml.safe_load_all(stream)) == json.loads(json.dumps(documents))


def test_multi_line_strings_are_literal_blocks(demo_catalog):
    text = dump_yaml(rendered("api:default/checkout-api"))

    assert (
        "  definition: |\n"
        "    openapi: 3.0.0\n"
        "    info: {title: Checkout API, version: 1.0.0}\n"
        "    paths: {}\n"
    ) in text


@pytest.mark.parametrize(
    "value",
    ["yes", "no", "on", "null", "~", "1", "0.5", "1e3", "2021-03-01", "true", "", " padded "],
)
def test_strings_that_look_like_other_yaml_types_stay_strings(value):
    document = {"metadata": {"annotations": {"example.com/value": value}}}

    assert yaml.safe_load(dump_yaml(document)) == document


@pytest.mark.parametrize(
    "value",
    ["no trailing newline\nsecond", "trailing spaces  \nsecond\n", "tab\tinside\n", "ends\n\n"],
)
def test_multi_line_strings_survive_the_dump(value):
    document = {"spec": {"definition": value}}

    assert yaml.safe_load(dump_yaml(document)) == document


def test_non_ascii_text_is_written_as_is():
    document = {"metadata": {"description": "Zahlungen in € — naïve café"}}

    text = dump_yaml(document)

    assert "Zahlungen in € — naïve café" in text
    assert yaml.safe_load(text) == document
