import pytest

from catalog.services import entities_upsert


def component(name: str, **spec_and_meta) -> dict:
    tags = spec_and_meta.pop("tags", [])
    namespace = spec_and_meta.pop("namespace", "default")
    title = spec_and_meta.pop("title", None)
    spec = {"type": "service", "lifecycle": "production", "owner": "team-a"}
    spec.update(spec_and_meta)
    metadata = {"name": name, "namespace": namespace, "tags": tags}
    if title:
        metadata["title"] = title
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": metadata,
        "spec": spec,
    }


def group(name: str) -> dict:
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Group",
        "metadata": {"name": name},
        "spec": {"type": "team", "children": []},
    }


DATASET = [
    component("alpha", tags=["java", "spring"], title="Alpha Service"),
    component("bravo", tags=["java"], type="website", owner="team-b"),
    component("charlie", tags=["python"], lifecycle="experimental"),
    component("delta", tags=["python", "django"], type="library", owner="team-b"),
    component("echo", tags=[], system="payments"),
    component("foxtrot", namespace="ops", tags=["go"], owner="group:ops/sre"),
    group("team-a"),
    group("team-b"),
]


@pytest.fixture
def catalog(db):
    """The dataset above, written through the catalog's one write path."""
    return {e.name: e for e in entities_upsert(documents=DATASET).entities}
