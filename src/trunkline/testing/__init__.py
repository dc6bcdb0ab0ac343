"""Conformance suites that every plugin (hub backend, connector, engine) must pass."""

from __future__ import annotations

from trunkline.testing.connectors import SinkConformance, SourceConformance
from trunkline.testing.hub import HubConformance, drain

__all__ = ["HubConformance", "SinkConformance", "SourceConformance", "drain"]
