"""Child processes for the hub's kill -9 tests (run as scripts, killed by pid)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

from trunkline.hub import Record
from trunkline.hub.embedded import EmbeddedHub


def plan(producer: str, round_no: int) -> list[list[Record]]:
    """The batches a producer attempts in a round: deterministic, so the parent knows them."""
    rng = random.Random(f"{producer}:{round_no}")
    batches = []
    seq = 0
    for _ in range(400):
        batch = []
        for _ in range(rng.randint(1, 40)):
            value = f"{producer}:{round_no}:{seq}:".encode() + b"x" * rng.randint(0, 300)
            batch.append(Record(value, key=f"k{rng.randrange(1000)}".encode()))
            seq += 1
        batches.append(batch)
    return batches


def produce(hub_path: str, topic: str, producer: str, round_no: int) -> None:
    with EmbeddedHub(Path(hub_path)) as hub:
        print("READY", flush=True)
        for batch in plan(producer, round_no):
            result = hub.produce(topic, batch)
            # One line per acknowledged batch: partition/offset of every record.
            print("ACK", " ".join(f"{p}/{o}" for p, o in result.as_pairs()), flush=True)


def consume(hub_path: str, topic: str, group: str, log_path: str) -> None:
    with EmbeddedHub(Path(hub_path)) as hub, open(log_path, "a") as log:
        consumer = hub.consumer(group, [topic], session_timeout_ms=1000)
        print("READY", flush=True)
        while True:
            for batch in consumer.poll(0.2, max_records=50):
                for offset in batch.records.column("offset").to_pylist():
                    log.write(f"{batch.partition} {offset}\n")
                log.flush()
            consumer.commit()


if __name__ == "__main__":
    if sys.argv[1] == "produce":
        produce(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        consume(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
