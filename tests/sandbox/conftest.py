from tests.sandbox.fixtures import (  # noqa: F401
    cloud_sandbox,
    dc_sandbox,
    make_cloud_sandbox,
    make_dc_sandbox,
)
