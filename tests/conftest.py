"""Hypothesis runs by example count, never by the clock: these machines are shared and
noisy, and a property test must not fail because one example or draw was slow."""

from hypothesis import HealthCheck, settings

settings.register_profile("leadpulse", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("leadpulse")


def pytest_report_header() -> str:
    """The `leadpulse` processes the tests start run the compiled build where it is of these
    sources (docs/compiled.md); in-process tests always import the pure sources."""
    from pathlib import Path

    from leadpulse.core import find_build

    tree, why = find_build(Path(__file__).resolve().parents[1])
    return f"leadpulse processes: the compiled core ({tree})" if tree else f"leadpulse processes: the pure core: {why}"
