"""A world's credentials: the Cloud sandbox's (:mod:`sandbox.cloud.credentials`) with the Data
Center sandbox's beside them (``dc``, :mod:`sandbox.datacenter.credentials`), dumped and loaded
together and numbered from one serial."""

from dataclasses import dataclass, field

from sandbox.cloud.credentials import READ_SCOPES, CloudCredentials
from sandbox.datacenter.credentials import DcCredentials

__all__ = ["READ_SCOPES", "Credentials"]


@dataclass
class Credentials(CloudCredentials):
    dc: DcCredentials = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.dc = DcCredentials(self)

    def _registries(self) -> tuple[dict, ...]:
        return (*super()._registries(), self.dc.tokens, self.dc.clients)

    def dump(self) -> dict:
        return {**super().dump(), **self.dc.dump()}

    def load(self, data: dict) -> None:
        self.dc.load(data)
        super().load(data)
