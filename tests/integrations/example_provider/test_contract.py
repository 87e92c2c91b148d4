"""The provider contract over the example provider's in-process source."""

import pytest

from tests.integrations.providers.contract import ProviderContract


class TestExampleContract(ProviderContract):
    @pytest.fixture
    def source(self, example_source):
        return example_source
