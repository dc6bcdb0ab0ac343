"""Every hub backend through the same conformance suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from trunkline.hub.embedded import EmbeddedHub
from trunkline.testing import HubConformance


class TestEmbeddedHub(HubConformance):
    @pytest.fixture
    def hub(self, tmp_path: Path) -> Iterator[EmbeddedHub]:
        with EmbeddedHub(tmp_path / "hub") as hub:
            yield hub


class TestEmbeddedHubWrittenAck(HubConformance):
    """The same semantics hold at the weaker ack level."""

    @pytest.fixture
    def hub(self, tmp_path: Path) -> Iterator[EmbeddedHub]:
        with EmbeddedHub(tmp_path / "hub", ack="written") as hub:
            yield hub
