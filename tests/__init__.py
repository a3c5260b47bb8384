"""
The test suite. Property tests (Hypothesis) run without its timing
checks: a slow moment of a shared machine (a health check on how fast
inputs are generated, a per-example deadline) is not a failure of the
property, and CI must not go red for it.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "oxian", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("oxian")
