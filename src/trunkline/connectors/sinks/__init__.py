"""Built-in sinks: ``duckdb`` and ``parquet`` (and, later, ``postgres`` and ``iceberg``)."""
