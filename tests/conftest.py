"""Shared pytest configuration: Hypothesis profiles.

`HYPOTHESIS_PROFILE=ci` (set by the CI script) runs 500 examples per property and prints the
reproduction blob of any failure; the default profile keeps Hypothesis' defaults for a fast
local loop. Neither profile has a deadline: the first example of a test pays for imports.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None)
settings.register_profile(
    "ci",
    max_examples=500,
    deadline=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
