"""``trunkline run`` with a test sink registered: ``slow`` writes received offsets to a file
and raises Backpressure while the file ``pause`` exists in the project directory."""

from __future__ import annotations

import sys
from collections.abc import Collection
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from trunkline.cli import main
from trunkline.connectors import SINKS
from trunkline.connectors.base import Capabilities, ConnectorContext, Sink, SinkSettings
from trunkline.errors import Backpressure
from trunkline.hub import FetchedBatch, TopicPartition


class SlowConfig(SinkSettings):
    output: str = Field(description="File the sink appends 'partition offset' lines to.")


class SlowSink(Sink):
    Config: ClassVar[type[SlowConfig]] = SlowConfig
    capabilities: ClassVar[Capabilities] = Capabilities()
    config: SlowConfig

    def __init__(self, name: str, config: SlowConfig) -> None:
        super().__init__(name, config)
        self._done: dict[TopicPartition, int] = {}
        self._root = Path()
        self._file = None

    def open(self, context: ConnectorContext) -> None:
        self._root = context.root
        self._file = open(context.path(self.config.output), "a")  # noqa: SIM115

    def write_batch(self, topic: str, batch: FetchedBatch) -> None:
        if (self._root / "pause").exists():
            raise Backpressure("paused by the test", retry_after=0.2)
        assert self._file is not None
        offsets = batch.records.column("offset").to_pylist()
        self._file.write("".join(f"{batch.partition} {o}\n" for o in offsets))
        self._done[TopicPartition(batch.topic, batch.partition)] = batch.next_offset

    def snapshot(self) -> dict[TopicPartition, int]:
        if self._file is not None:
            self._file.flush()
        done, self._done = self._done, {}
        return done

    def revoke(self, partitions: Collection[TopicPartition]) -> None:
        for tp in partitions:
            self._done.pop(tp, None)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


SINKS.register("slow", SlowSink)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
