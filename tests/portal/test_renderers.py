"""The orjson-backed JSON renderer gives DRF's bytes for everything the API returns."""

import datetime
import decimal
import json
import uuid

import pytest
from rest_framework.exceptions import ErrorDetail
from rest_framework.renderers import JSONRenderer as DRFJSONRenderer

from portal.renderers import JSONRenderer

CASES = {
    "document": {
        "apiVersion": "backstage.io/v1alpha1",
        "metadata": {"name": "ünïcode ✓", "tags": ["a", "b"], "n": 3, "x": 1.5, "ok": True},
        "spec": {"nested": [{"deep": None}], "empty": {}},
    },
    "timestamps": {
        "aware": datetime.datetime(2026, 11, 24, 12, 30, 5, 123456, tzinfo=datetime.UTC),
        "naive": datetime.datetime(2026, 11, 24, 12, 30, 5),
        "date": datetime.date(2026, 11, 24),
        "time": datetime.time(12, 30),
    },
    "other types": {
        "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "decimal": decimal.Decimal("1.25"),
        "error": [ErrorDetail("This field is required.", code="required")],
        "tuple": (1, 2),
    },
    "script-unsafe separators": {"text": "line\u2028separator\u2029paragraph"},
    "big integer": {"n": 2**70},
    "list": [{"a": 1}, {"b": [1, 2, 3]}],
}


@pytest.mark.parametrize("data", CASES.values(), ids=CASES.keys())
def test_renders_the_bytes_drf_renders(data):
    assert JSONRenderer().render(data) == DRFJSONRenderer().render(data)


def test_an_indent_asked_for_in_accept_is_honoured():
    body = JSONRenderer().render({"a": [1]}, "application/json; indent=2", {})
    assert body == DRFJSONRenderer().render({"a": [1]}, "application/json; indent=2", {})
    assert b"\n  " in body


def test_nan_is_null_instead_of_a_server_error():
    assert json.loads(JSONRenderer().render({"x": float("nan")})) == {"x": None}
