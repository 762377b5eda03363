"""Every rule Airlock has, for documentation, SARIF and the inspected-state lookup.

Rules register themselves when their module is imported (`findings.Rule.__init_subclass__`); the
catalog imports every module that defines some. It is apart from `findings` so that the leaf every
parser imports does not import every parser back (that was an import cycle through the registry).
"""

from __future__ import annotations

from airlock.core.findings import Rule


def all_rules() -> list[type[Rule]]:
    _load_rule_modules()
    return sorted(Rule.registry.values(), key=lambda r: r.id)


def _load_rule_modules() -> None:
    # Rules live next to the format they judge; importing the registry of formats imports them all.
    from airlock.core import (
        formats,
        remote,  # noqa: F401 - remote range reads (a misbehaving server, the byte budget)
        templates,  # noqa: F401 - chat-template rules (jinja2 is imported only to parse)
    )
    from airlock.core.formats import model_folder_context  # noqa: F401 - code shipped with a model
    from airlock.core.provenance import rules  # noqa: F401 - hashes, pins, signatures, policy
    from airlock.core.review import rules as review_rules  # noqa: F401 - approvals (--require-approved)

    formats.load_all_modules()
