"""The engine tests' fixtures (settings, client, start_runtime), shared rather than copied."""

from tests.integration.engine.conftest import client, settings, start_runtime  # noqa: F401
