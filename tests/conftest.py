"""Shared pytest configuration: Hypothesis profiles for the fuzz tests (tests/test_fuzz.py).

* ``ci`` (default): 200 examples per test, derandomized (the same cases on every run, so CI is
  reproducible), no example database.
* ``long`` (``KDFACE_FUZZ_PROFILE=long``): ``KDFACE_FUZZ_EXAMPLES`` examples per test (default 20000),
  random seeds, failures saved in Hypothesis' example database (``.hypothesis/``) for replay.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    suppress_health_check=_SUPPRESSED,
    derandomize=True,
    database=None,
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("KDFACE_FUZZ_EXAMPLES", "20000")),
    deadline=None,
    suppress_health_check=_SUPPRESSED,
    derandomize=False,
)
settings.load_profile("long" if os.environ.get("KDFACE_FUZZ_PROFILE") == "long" else "ci")
