"""raypw.compat runs on the session's one local Ray: the integration tests' fixture, reused."""

from tests.integration.conftest import ray_session  # noqa: F401 - autouse, session-wide
