import os
import sys

# One thread per process: tests start subprocesses (torchrun ranks, scripts) beside the pytest
# process, and OpenMP threads that wait for a descheduled sibling make tiny models ~100x slower on
# a 2-core machine. Set before torch is imported, so subprocesses inherit it too.
os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED_DATA = os.path.join(ROOT, "..", "shared", "data")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer than a CI run allows; run with -m slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("-m"):
        return
    skip = pytest.mark.skip(reason="slow: run with `pytest -m slow`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
