from tests.sandbox.fixtures import cloud_sandbox, make_cloud_sandbox  # noqa: F401
