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


# The longest files first. `make test` runs `--dist loadfile --no-loadscope-reorder`: the two workers take
# whole files in collection order, so a long file collected late runs alone at the end (xdist's default
# reorder puts the files with the most tests first, which left the few but long SIGKILL-resume and
# make-demo tests for last: 15 min wall against about 13 of work per worker).
LONGEST_FIRST = (
    "test_resume_kill.py",
    "test_demos_make.py",
    "test_distributed.py",
    "test_cli_e2e.py",
    "test_recognition_method.py",
    "test_doe.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
