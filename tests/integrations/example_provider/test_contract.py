"""The provider contract over the example provider's in-process source."""

import pytest

from tests.integrations.example_provider.provider import ExampleProvider
from tests.integrations.providers.contract import ProviderContract


class TestExampleContract(ProviderContract):
    @pytest.fixture
    def source(self, example_source):
        return example_source

    def test_the_contract_runs_against_the_example_provider(self, source):
        assert type(source.provider()) is ExampleProvider
