"""The fixtures of the engine's integration tests (settings, client) serve these tests too."""

from tests.integration.engine.conftest import client, settings  # noqa: F401
