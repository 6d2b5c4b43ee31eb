"""The fixtures of the engine's integration tests (settings, client, runtimes) serve these tests too."""

from tests.integration.engine.conftest import client, settings, start_runtime  # noqa: F401
