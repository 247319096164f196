"""Usage records, rollups and report exports (the analytics issue fills this app)."""
