"""Pure RDBSS logic: UNC names, the prefix table, the structures and their state machines."""
