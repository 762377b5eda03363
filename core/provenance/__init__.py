"""Chain of custody: is this the file that was reviewed?

One small module per step, as model-transparency keeps hashing, manifests and verification apart:
`hashing` (SHA-256 and git blob SHA-1 of files), `manifest` (SHA256SUMS), `hf_cache` (the Hugging
Face cache layout), `shards` (sharded checkpoint indexes), `signing` (OpenSSF model signing),
`lockfile` (`airlock lock`), `verify` (all of them as findings), and `cli` (the `hash`, `verify` and
`lock` commands). Nothing here parses a model's content beyond what a check needs, and nothing is
imported on the plain `airlock scan` path.
"""
