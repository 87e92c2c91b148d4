"""The example provider's source: an in-process service holding collections of repositories,
answering page by page, refusing a wrong API key, and failing scripted requests the way a
flaky API does (the provider retries those)."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
PAGE_SIZE = 4


class Refused(Exception):
    pass


class Transient(Exception):
    pass


@dataclass
class Repo:
    id: str
    name: str
    updated: datetime
    files: dict[str, bytes] = field(default_factory=dict)
    pull_requests: list[dict] = field(default_factory=list)
    commits: list[dict] = field(default_factory=list)

    def raw(self) -> dict:
        return {"id": self.id, "name": self.name, "updated": self.updated.isoformat()}


@dataclass
class ExampleSource:
    api_key: str
    collections: dict[str, list[Repo]]
    faults: list[str] = field(default_factory=list)
    requests: int = 0

    def call(self, api_key: str) -> None:
        """One request: counted, refused for a wrong key, or failed by the next scripted
        fault."""
        self.requests += 1
        if api_key != self.api_key:
            raise Refused("The example API key was refused")
        if self.faults:
            raise Transient(self.faults.pop(0))

    def page(self, api_key: str, collection: str, start: int) -> tuple[list[dict], int | None]:
        self.call(api_key)
        repos = self.collections.get(collection, [])
        chunk = repos[start : start + PAGE_SIZE]
        following = start + PAGE_SIZE
        return [repo.raw() for repo in chunk], following if following < len(repos) else None

    def repo(self, api_key: str, collection: str, repo_id: str) -> Repo | None:
        self.call(api_key)
        return next((r for r in self.collections.get(collection, []) if r.id == repo_id), None)


def generated(api_key: str = "example-key", repos: int = 10) -> ExampleSource:
    """A source with one collection, ``alpha``, of ``repos`` repositories; each has a few pull
    requests and commits, the first a catalog-info.yaml."""
    items = []
    for index in range(repos):
        updated = EPOCH + timedelta(days=index)
        repo = Repo(id=f"ex-{index}", name=f"service-{index}", updated=updated)
        repo.pull_requests = [
            {"id": str(n), "title": f"Change {n}", "state": "OPEN", "updated": updated + hours}
            for n, hours in ((n, timedelta(hours=n)) for n in range(1, 4))
        ]
        repo.commits = [
            {"hash": f"{index:02d}{n:038d}", "date": updated + minutes, "message": f"c{n}"}
            for n, minutes in ((n, timedelta(minutes=n)) for n in range(5))
        ]
        items.append(repo)
    items[0].files["catalog-info.yaml"] = b"kind: Component\nmetadata:\n  name: service-0\n"
    return ExampleSource(api_key=api_key, collections={"alpha": items})
