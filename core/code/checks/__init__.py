"""The code checks, Bandit-style: each is one function registered with `@check`, a rule, and the
callees it looks at; its docstring says what it catches. A check receives a `CallSite` and yields
`Issue`s; it never sees files, nodes or findings (airlock.core.code.report makes those).

    deserialize.py  torch.load, pickle & co., joblib, numpy, pandas, shelve, marshal
    loaders.py      YAML, Keras, TensorFlow, torch.hub, torch.package, MLflow, torch.distributed
    remote.py       trust_remote_code, exec of downloaded text, imports from downloaded folders
    sources.py      floating revisions, http://, verify=False, use_safetensors=False
"""

from __future__ import annotations

from airlock.core.code.checks.registry import (
    ALL,
    ANY_CALL,
    BY_METHOD,
    BY_NAME,
    TARGETS,
    CheckFn,
    Issue,
    callee,
    check,
    issue,
    named,
)

__all__ = ["ALL", "ANY_CALL", "BY_METHOD", "BY_NAME", "TARGETS", "CheckFn", "Issue", "callee", "check",
           "issue", "load_checks", "named"]


def load_checks() -> None:
    """Import every check module (registration happens at import)."""
    from airlock.core.code import names
    from airlock.core.code.checks import deserialize, loaders, remote, sources  # noqa: F401

    if not TARGETS:
        TARGETS.update(BY_NAME, names.RESULT_FLAGS, names.DOWNLOADS, names.PASS_THROUGH)
        TARGETS.update({"functools.partial", "functools.partialmethod", "msgpack_numpy.patch"})
