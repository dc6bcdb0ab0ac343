"""Run one ``trunkline perf`` benchmark and keep its JSON under benchmarks/results/.

Usage: python benchmarks/run.py hub [extra trunkline perf arguments...]
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    name, extra = argv[0], argv[1:]
    command = [sys.executable, "-m", "trunkline", "perf", name, "--json", *extra]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    figures = json.loads(done.stdout)
    figures["command"] = " ".join(["trunkline", "perf", name, "--json", *extra])
    figures["host"] = platform.node()
    stamp = time.strftime("%Y-%m-%dT%H%M%S")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    print(f"kept in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
