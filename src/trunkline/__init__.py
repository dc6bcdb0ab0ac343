"""trunkline: a log hub as the ETL backbone of a data platform."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
