"""SQLite storage through sqlite-utils: schema, migrations, typed records, queries."""
