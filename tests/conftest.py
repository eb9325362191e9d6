"""Hypothesis runs by example count, never by the clock: these machines are shared and
noisy, and a property test must not fail because one example or draw was slow."""

from hypothesis import HealthCheck, settings

settings.register_profile("leadpulse", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("leadpulse")
