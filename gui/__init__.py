"""Airlock's desktop inspector (PySide6). Wraps airlock.core objects; never parses bytes itself."""
