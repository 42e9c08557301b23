"""Repository-wide pytest configuration.

Under CI (the CI environment variable is set), hypothesis runs derandomized: a red CI must come
from a change, not from a new random draw. Locally it keeps exploring new examples."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist each worker counts its own figures: hand them to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        from lamina.testing import figures

        workeroutput["lamina_figures"] = dict(figures.FIGURES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """The controller sums the figures of every worker that finished."""
    from lamina.testing import figures

    figures.add(**getattr(node, "workeroutput", {}).get("lamina_figures", {}))


def pytest_terminal_summary(terminalreporter: object) -> None:
    """Print the reliability figures (crash states, kills, detection rate...) the crash-proof
    suite measured in this run, so its targets are checked on every CI run, not just claimed."""
    from lamina.testing import figures

    figures.print_summary(terminalreporter)
