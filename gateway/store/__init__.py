"""Persistence behind a small interface (SQLite by default)."""
