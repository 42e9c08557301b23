"""Repository-wide pytest configuration.

Under CI (the CI environment variable is set), hypothesis runs derandomized: a red CI must come
from a change, not from a new random draw. Locally it keeps exploring new examples."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_terminal_summary(terminalreporter: object) -> None:
    """Print the reliability figures (crash states, kills, detection rate...) the crash-proof
    suite measured in this run, so its targets are checked on every CI run, not just claimed."""
    from lamina.testing import figures

    figures.print_summary(terminalreporter)
