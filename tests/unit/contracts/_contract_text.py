"""A contract builder over a minimal valid header, for the contract tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

FIXTURE = Path(__file__).parents[2] / "fixtures" / "contracts" / "orders.yaml"

HEADER = """\
apiVersion: v3.0.2
kind: DataContract
id: t
version: 1.0.0
status: active
"""


def contract_text(schema: str, extra: str = "") -> str:
    """A contract whose schema object is named ``orders`` with the given properties block."""
    body = "schema:\n  - name: orders\n    properties:\n" + textwrap.indent(
        textwrap.dedent(schema).strip("\n"), "      "
    )
    return HEADER + body + "\n" + textwrap.dedent(extra)
