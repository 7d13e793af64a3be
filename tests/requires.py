"""What a test does when a server, browser or optional package it needs is not there."""

from __future__ import annotations

import os

import pytest


def unavailable(reason: str) -> None:
    """Skip the test, or fail it where ``ZSAD_REQUIRE_SERVERS=1`` (``.ci/run``): CI never passes
    by skipping the real-server, S3 and browser tests."""
    if os.environ.get("ZSAD_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{reason} (ZSAD_REQUIRE_SERVERS=1: required here)", pytrace=False)
    pytest.skip(reason)
