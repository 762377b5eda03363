"""The review trail: who decided what about which exact file.

An approval or a rejection belongs to a file's SHA-256, never to its name: a renamed copy is
approved, a one-byte change is not. One small module per step: `db` (tables declared once, where
the database is, opening it: SQLite by default, PostgreSQL for a team), `migrations` (the ordered
schema versions; a database written by a newer Airlock is refused, never altered), `queries`
(inserts and look-ups as functions), `decisions` (building a record from a scan: hashes, findings
digest, policy digest, reviewer), `gate` (`--require-approved`: the findings for model files
without an approval), `rules` (REV0xx) and `cli` (`approve`, `reject`, `history`). Nothing here is
imported on the plain `airlock scan` path.
"""
