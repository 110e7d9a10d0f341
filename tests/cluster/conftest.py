"""Shared fixtures of the cluster tests: skip without root or iproute2, and check
at the end of the session that no namespace of this run is left and that the
root namespace's interfaces, addresses, routes and rules are as they were."""

from __future__ import annotations

import os
import shutil

import pytest

from harness import our_namespaces, root_network_state


def pytest_collection_modifyitems(config, items):
    reason = None
    if os.geteuid() != 0:
        reason = "cluster tests need root (network namespaces)"
    elif not (shutil.which("ip") and shutil.which("tc")):
        reason = "iproute2 missing: run tests/cluster/install.sh"
    if reason:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def root_state_before():
    return root_network_state()


@pytest.fixture(scope="session", autouse=True)
def no_leftovers_at_session_end(root_state_before):
    yield
    assert our_namespaces() == [], "namespaces left behind"
    assert root_network_state() == root_state_before, "the root namespace's network changed"
