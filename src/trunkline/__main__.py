"""``python -m trunkline``: the same as the ``trunkline`` command."""

from __future__ import annotations

import sys

from trunkline.cli import main

sys.exit(main())
