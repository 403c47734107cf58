"""rdbss tests."""
