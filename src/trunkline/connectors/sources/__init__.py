"""Built-in sources: ``files`` (and, later, ``postgres_cdc`` and ``http``)."""
