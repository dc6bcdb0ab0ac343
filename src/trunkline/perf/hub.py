"""``trunkline perf hub``: throughput and latency of a hub, with its baseline in the same run.

:func:`run` takes any hub opener: :func:`run_embedded` and :func:`run_kafka` run it on one
backend, :func:`run_compare` on both in one run, with ``ratio_*`` = embedded / kafka.

Workloads (ack level as configured, ``fsync`` by default):

* produce 1 KiB values in batches of 1,000 records (Arrow batches, keyless, one partition);
* produce 100-byte values in batches of 1,000 records;
* consume those 100-byte records back through a consumer group;
* latency: a producer sends one record at a steady, modest rate while a consumer in another
  process polls; latency is consume time minus the record's produce timestamp;
* baseline: the same value bytes appended to a plain file with one fdatasync per batch of
  1,000 values (``raw_ceiling_mb_s``), the upper bound for any durable log on this disk.
  After one unmeasured warm-up run, baseline and 1 KiB produce alternate ``repeats`` times
  and their medians are reported.

MB is 10^6 bytes of record values (keys and framing not counted).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from trunkline.hub import Hub, Record, TopicConfig

BATCH = 1000


def _values(size: int, count: int, seed: int) -> pa.Array:
    """``count`` random values of ``size`` bytes as one Arrow binary array (no Python loop)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size * count, dtype=np.uint8)
    offsets = np.arange(0, (count + 1) * size, size, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def raw_ceiling(directory: Path, values: pa.Array, batch: int = BATCH) -> float:
    """MB/s of appending the values' bytes to a new plain file, one fdatasync per batch."""
    path = directory / f"raw-ceiling-{time.monotonic_ns()}.bin"
    data = values.buffers()[2]
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        start = time.perf_counter()
        for first in range(0, len(values), batch):
            last = min(first + batch, len(values))
            chunk = memoryview(data)[offsets[first] : offsets[last]]
            os.write(fd, chunk)
            os.fdatasync(fd)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
        path.unlink()
    return int(offsets[-1]) / elapsed / 1e6


def produce_throughput(hub: Hub, topic: str, values: pa.Array) -> tuple[float, float]:
    """(records/s, MB/s) producing ``values`` in Arrow batches of BATCH records."""
    batches = [
        pa.record_batch({"value": values.slice(i, BATCH)}) for i in range(0, len(values), BATCH)
    ]
    start = time.perf_counter()
    for batch in batches:
        hub.produce(topic, batch, partition=0)
    elapsed = time.perf_counter() - start
    size = values.buffers()[1]
    total = int(np.frombuffer(size, dtype=np.int32)[-1]) if size is not None else 0
    return len(values) / elapsed, total / elapsed / 1e6


def consume_throughput(hub: Hub, topic: str, expected: int) -> float:
    """records/s reading ``expected`` records of ``topic`` through a fresh consumer group."""
    group = f"perf-{os.getpid()}-{time.monotonic_ns()}"
    with hub.consumer(group, [topic]) as consumer:
        # Join and take the assignment outside the clock (a Kafka group assigns a moment
        # after the join).
        consumer.poll(0.0, max_records=1)
        while not consumer.assignment():
            consumer.poll(0.1, max_records=1)
        consumer.seek(next(iter(consumer.assignment())), 0)
        seen = 0
        start = time.perf_counter()
        while seen < expected:
            for batch in consumer.poll(1.0, max_records=100_000):
                seen += batch.records.num_rows
        elapsed = time.perf_counter() - start
    return seen / elapsed


def _latency_consumer(
    opener: Callable[[], Hub], topic: str, expected: int, ready: Any, out: Any
) -> None:
    with opener() as hub, hub.consumer("perf-latency", [topic], auto_offset_reset="latest") as c:
        while not c.assignment():
            c.poll(0.05)
        ready.set()
        samples: list[float] = []
        while len(samples) < expected:
            for batch in c.poll(1.0):
                now = time.time() * 1000
                stamps = batch.records.column("timestamp").cast(pa.int64()).to_numpy()
                samples += (now - stamps).tolist()
        out.put(samples)


def latency(
    opener: Callable[[], Hub], hub: Hub, topic: str, rate: float, seconds: float
) -> list[float]:
    """Produce -> consume latency (ms) of single records sent at ``rate`` per second."""
    count = int(rate * seconds)
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_latency_consumer, args=(opener, topic, count, ready, out))
    proc.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the latency consumer did not start within 60 s")
        interval = 1.0 / rate
        next_at = time.perf_counter()
        for i in range(count):
            next_at += interval
            stamp = time.time_ns() // 1_000_000
            hub.produce(topic, [Record(b"%d" % i, timestamp=stamp)], partition=0)
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        samples: list[float] = out.get(timeout=60)
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    return samples


def _percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


def run(
    opener: Callable[[], Hub],
    workdir: Path,
    *,
    mb_1k: int = 256,
    records_100b: int = 1_000_000,
    latency_rate: float = 200.0,
    latency_seconds: float = 5.0,
    repeats: int = 3,
) -> dict[str, Any]:
    """Run every workload against the hub ``opener`` returns; returns the figures."""
    values_1k = _values(1024, mb_1k * 1024 * 1024 // 1024, seed=1)
    values_100 = _values(100, records_100b, seed=2)
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    keep = TopicConfig(partitions=1, retention_ms=None)
    raws: list[float] = []
    runs_1k: list[tuple[float, float]] = []
    with opener() as hub:
        # A virtual disk's fsync speed drifts by 2-4x between runs, and the first writes to
        # never-used blocks are the slowest: one unmeasured baseline run warms the disk up,
        # then the baseline and the hub alternate, each on a fresh file, and the medians are
        # compared.
        raw_ceiling(workdir, values_1k)
        for rep in range(repeats):
            raws.append(raw_ceiling(workdir, values_1k))
            topic = f"perf-1k-{tag}-{rep}"
            hub.create_topic(topic, keep)
            runs_1k.append(produce_throughput(hub, topic, values_1k))
            hub.delete_topic(topic)
        raw = statistics.median(raws)
        rec_1k = statistics.median(r for r, _ in runs_1k)
        mb_1k_s = statistics.median(m for _, m in runs_1k)
        hub.create_topic(f"perf-100b-{tag}", keep)
        hub.create_topic(f"perf-latency-{tag}", keep)
        rec_100, mb_100_s = produce_throughput(hub, f"perf-100b-{tag}", values_100)
        consumed = consume_throughput(hub, f"perf-100b-{tag}", records_100b)
        samples = latency(opener, hub, f"perf-latency-{tag}", latency_rate, latency_seconds)
        for topic in (f"perf-100b-{tag}", f"perf-latency-{tag}"):
            hub.delete_topic(topic)
    return {
        "backend": getattr(hub, "backend", "?"),
        "produce_records_s": round(rec_1k),
        "produce_mb_s": round(mb_1k_s, 1),
        "produce_records_s_100b": round(rec_100),
        "produce_mb_s_100b": round(mb_100_s, 1),
        "consume_records_s_100b": round(consumed),
        "latency_p50_ms": round(_percentile(samples, 50), 2),
        "latency_p99_ms": round(_percentile(samples, 99), 2),
        "latency_mean_ms": round(statistics.fmean(samples), 2),
        "latency_samples": len(samples),
        "latency_rate_per_s": latency_rate,
        "raw_ceiling_mb_s": round(raw, 1),
        "raw_ceiling_runs_mb_s": [round(r, 1) for r in raws],
        "produce_runs_mb_s": [round(m, 1) for _, m in runs_1k],
        "produce_vs_raw_ceiling": round(mb_1k_s / raw, 2),
        "workload": {
            "values_1k_mb": mb_1k,
            "records_100b": records_100b,
            "batch_records": BATCH,
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


class EmbeddedOpener:
    """Picklable factory of embedded hubs on one folder (the latency consumer runs elsewhere)."""

    def __init__(self, path: Path, ack: str) -> None:
        self.path = path
        self.ack = ack

    def __call__(self) -> Hub:
        from trunkline.hub.embedded import EmbeddedHub

        return EmbeddedHub(self.path, ack=self.ack)


def run_embedded(directory: Path | None = None, ack: str = "fsync", **sizes: Any) -> dict[str, Any]:
    """The benchmark on a fresh embedded hub in ``directory`` (a temp folder by default)."""
    with tempfile.TemporaryDirectory(dir=directory, prefix="trunkline-perf-") as tmp:
        work = Path(tmp)
        figures = run(EmbeddedOpener(work / "hub", ack), work, **sizes)
    figures["ack"] = ack
    return figures


class KafkaOpener:
    """Picklable factory of Kafka hubs on one cluster (the latency consumer runs elsewhere)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def __call__(self) -> Hub:
        from trunkline.hub.kafka import KafkaHub

        return KafkaHub(self.bootstrap)


def kafka_durability(bootstrap: str) -> dict[str, Any]:
    """What an acknowledged produce means on this cluster (for the benchmark's JSON)."""
    from trunkline.hub.kafka import KafkaHub

    with KafkaHub(bootstrap) as hub:
        settings = hub.broker_settings()
    return {
        "acks": "all",
        "enable.idempotence": True,
        "replication_factor": settings.get("default.replication.factor"),
        "min_insync_replicas": settings.get("min.insync.replicas"),
        "log.flush.interval.messages": settings.get("log.flush.interval.messages"),
        "log.flush.interval.ms": settings.get("log.flush.interval.ms"),
        "meaning": (
            "acknowledged once in the page cache of every in-sync replica; Kafka does not "
            "fsync per write (the broker's default flush policy), it relies on replication. "
            "With one broker: survives a broker process crash, not a power loss"
        ),
    }


def run_kafka(bootstrap: str, directory: Path | None = None, **sizes: Any) -> dict[str, Any]:
    """The benchmark on the Kafka cluster at ``bootstrap`` (topics are created and deleted).

    ``directory`` only holds the raw-ceiling file (the local disk's fsync baseline).
    """
    with tempfile.TemporaryDirectory(dir=directory, prefix="trunkline-perf-") as tmp:
        figures = run(KafkaOpener(bootstrap), Path(tmp), **sizes)
    figures["durability"] = kafka_durability(bootstrap)
    return figures


def run_compare(
    bootstrap: str, directory: Path | None = None, ack: str = "fsync", **sizes: Any
) -> dict[str, Any]:
    """The same workload on the embedded hub and on Kafka, one after the other.

    ``ratio_produce`` compares 1 KiB produce throughput (MB/s), ``ratio_produce_100b`` the
    100-byte one, ``ratio_consume`` group consume throughput (records/s): embedded / kafka,
    so above 1.0 the embedded hub is faster.
    """
    embedded = run_embedded(directory, ack=ack, **sizes)
    embedded["durability"] = {
        "ack": ack,
        "meaning": {
            "fsync": "acknowledged after fdatasync of the log: survives a power loss",
            "written": "acknowledged once written to the OS: survives a process crash",
        }.get(ack, ack),
    }
    kafka = run_kafka(bootstrap, directory, **sizes)
    return {
        "embedded": embedded,
        "kafka": kafka,
        "ratio_produce": round(embedded["produce_mb_s"] / kafka["produce_mb_s"], 2),
        "ratio_produce_100b": round(
            embedded["produce_records_s_100b"] / kafka["produce_records_s_100b"], 2
        ),
        "ratio_consume": round(
            embedded["consume_records_s_100b"] / kafka["consume_records_s_100b"], 2
        ),
    }
