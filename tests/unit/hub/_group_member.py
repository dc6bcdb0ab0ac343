"""One consumer-group member as a real process, for test_groups.py's multi-process test.

Usage: python _group_member.py HUB_DIR MEMBER_ID LOG_PATH STOP_PATH SESSION_TIMEOUT_MS

Behaves like a consumer: syncs every 50 ms, commits an increasing offset for every partition
it owns (starting from the committed one), hands over what it must release, and leaves when
STOP_PATH exists. Appends one JSON line per event to LOG_PATH (times in ms, from time.time):

    sync     t (after the sync returned), lease, owned  -> it believes it owns `owned` from t
    acquire  p, c0 (committed offset when it took p)
    attempt  offsets {p: o};  ok  offsets  (after the commit returned);  refused  offsets
    release  t (before calling release), parts     -> its belief in `parts` ends at t
    fenced   t
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from trunkline.errors import NotAssigned
from trunkline.hub._groups import GroupStore
from trunkline.hub._types import TopicPartition

GROUP = "workers"
TOPIC = "events"
PARTITIONS = 6
PERIOD = 0.05


def main() -> None:
    hub_dir, member, log_path, stop_path, timeout_ms = sys.argv[1:6]
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def log(event: str, **fields: object) -> None:
        # One write per line: a SIGKILL cannot leave half of it in the file.
        os.write(fd, (json.dumps({"e": event, **fields}) + "\n").encode())

    store = GroupStore(hub_dir)
    store.join(GROUP, member, [TOPIC], client="test", session_timeout_ms=int(timeout_ms))
    positions: dict[int, int] = {}
    while not Path(stop_path).exists():
        result = store.sync(GROUP, member, {TOPIC: PARTITIONS})
        now = time.time() * 1000
        if result.fenced:
            log("fenced", t=now)
            positions.clear()
            store.join(GROUP, member, [TOPIC], client="test", session_timeout_ms=int(timeout_ms))
            continue
        log("sync", t=now, lease=result.lease_expires_ms, owned=_parts(result.owned))
        for p in list(positions):
            if TopicPartition(TOPIC, p) not in result.owned:
                del positions[p]  # lost without releasing: forget, never commit
        for tp in result.acquired:
            positions[tp.partition] = result.committed.get(tp, 0)
            log("acquire", p=tp.partition, c0=positions[tp.partition])
        keep = result.owned - result.to_release
        if keep and time.time() * 1000 < result.lease_expires_ms:
            offsets = {tp.partition: positions[tp.partition] + 1 for tp in keep}
            log("attempt", offsets=offsets)
            try:
                store.commit(
                    GROUP,
                    {TopicPartition(TOPIC, p): o for p, o in offsets.items()},
                    member_id=member,
                )
            except NotAssigned:
                log("refused", offsets=offsets)
            else:
                positions.update(offsets)
                log("ok", offsets=offsets)
        if result.to_release:
            log("release", t=time.time() * 1000, parts=_parts(result.to_release))
            store.release(GROUP, member, result.to_release)
            for tp in result.to_release:
                positions.pop(tp.partition, None)
        time.sleep(PERIOD)
    log("release", t=time.time() * 1000, parts=list(range(PARTITIONS)))
    store.leave(GROUP, member)
    store.close()


def _parts(tps: frozenset[TopicPartition]) -> list[int]:
    return sorted(tp.partition for tp in tps)


if __name__ == "__main__":
    main()
