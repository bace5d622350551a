"""The /fota surface: parsing (pure), Block Kit builders (pure) and the thin listeners."""
