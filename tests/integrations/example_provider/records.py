"""The example source's payloads → the engine's records (no Django)."""

from datetime import datetime

from integrations.providers.base import CommitRecord, PullRequestRecord, RepoRecord


def repository_record(raw: dict) -> RepoRecord:
    data = {"id": raw["id"], "name": raw["name"], "updated": raw["updated"]}
    return RepoRecord(
        external_id=raw["id"],
        name=raw["name"],
        data=data,
        updated_at=datetime.fromisoformat(raw["updated"]),
        raw=raw,
    )


def pull_request_record(raw: dict) -> PullRequestRecord:
    return PullRequestRecord(
        external_id=raw["id"],
        title=raw["title"],
        state=raw["state"],
        updated_on=raw["updated"],
        raw=raw,
    )


def commit_record(raw: dict) -> CommitRecord:
    return CommitRecord(hash=raw["hash"], date=raw["date"], message=raw["message"], raw=raw)
