"""The suite's root configuration: quantlab's plugin and the hypothesis profiles.

HYPOTHESIS_PROFILE=thorough runs many more property examples than the fast default.
"""

import os

from hypothesis import HealthCheck, settings

pytest_plugins = ["quantlab.pytest_plugin"]

settings.register_profile("fast", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))
