"""The suite's root configuration: the hypothesis profiles (quantlab's plugin comes by its entry point).

HYPOTHESIS_PROFILE=thorough runs many more property examples than the fast default.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("fast", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))
