"""Severities, findings and the rule registry.

Every check Airlock makes is one small `Rule` subclass with a stable id. Subclasses register
themselves, so the SARIF report can describe every rule and tests can list them.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from airlock.core.tree import Node


class Severity(enum.IntEnum):
    NONE = 0
    INFO = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CRITICAL = 5

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (expected one of {names})") from None


class Finding:
    # Equality is identity: two findings with the same text are still two findings.
    __slots__ = ("detail", "length", "member", "message", "node", "offset", "rule", "severity")

    def __init__(self, rule: str, severity: Severity, message: str, offset: int | None = None,
                 length: int | None = None, member: str | None = None, node: Node | None = None,
                 detail: str | None = None) -> None:
        self.rule = rule
        self.severity = severity
        self.message = message
        self.offset = offset
        self.length = length
        self.member = member
        self.node = node
        self.detail = detail  # several lines a report shows under the message (a template's drift diff)

    def __repr__(self) -> str:
        return (f"Finding(rule={self.rule!r}, severity={self.severity!r}, message={self.message!r}, "
                f"offset={self.offset!r}, length={self.length!r}, member={self.member!r}, "
                f"node={self.node!r})")

    def node_path(self) -> str | None:
        return self.node.path() if self.node is not None else None


class Rule:
    """One check. `id` is stable forever (reports and CI baselines refer to it)."""

    id: ClassVar[str]
    severity: ClassVar[Severity]
    title: ClassVar[str]
    help: ClassVar[str] = ""
    # True for rules that say part of the file was not inspected (a limit, a break in the structure,
    # an unknown format, a crash): `airlock.core.inspection` derives a file's `inspected` state from them.
    incomplete: ClassVar[bool] = False
    # Why it matters and what to do about it (SARIF's rule help, docs/rules.md); empty: the text for
    # the rule's severity (airlock.core.report.sarif).
    why: ClassVar[str] = ""
    remedy: ClassVar[str] = ""

    registry: ClassVar[dict[str, type[Rule]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "id" not in cls.__dict__:
            return  # an abstract grouping class
        if cls.id in Rule.registry and Rule.registry[cls.id] is not cls:
            raise RuntimeError(f"duplicate rule id {cls.id}")
        Rule.registry[cls.id] = cls


# Rules shared by every format.


class ParserCrash(Rule):
    id = "AIR001"
    severity = Severity.HIGH
    title = "Parser failure"
    help = "Airlock's parser failed on this file; a real loader may read it differently."
    incomplete = True


class Malformed(Rule):
    id = "AIR002"
    severity = Severity.HIGH
    title = "Truncated or malformed structure"
    help = "The file is truncated or malformed; a loader still acts on what comes before the break."
    incomplete = True


class LimitExceeded(Rule):
    id = "AIR003"
    severity = Severity.HIGH
    title = "Resource limit exceeded"
    help = "The file exceeded a time or size budget; what lies beyond was not inspected."
    incomplete = True


class ExtensionMismatch(Rule):
    id = "AIR004"
    severity = Severity.LOW
    title = "Extension disagrees with content"
    help = "The file's extension names another format than its content."


class NotInspected(Rule):
    # Medium, not info: a gate must never pass what it did not read (fail closed).
    id = "AIR005"
    severity = Severity.MEDIUM
    title = "Not inspected"
    help = "Airlock does not read this content (an unknown or unsupported format, or a part it skipped); "\
        "it is not known to be safe."
    incomplete = True


class Skipped(Rule):
    id = "AIR006"
    severity = Severity.INFO
    title = "Not a regular file"
    help = "FIFOs, sockets and devices are listed but never opened."
    incomplete = True


class Unreadable(Rule):
    id = "AIR007"
    severity = Severity.HIGH
    title = "File could not be read"
    help = "The file could not be opened or read; it was not inspected."
    incomplete = True


class TrailingData(Rule):
    id = "AIR008"
    severity = Severity.LOW
    title = "Trailing bytes"
    help = "Bytes after the end of the format's data; loaders ignore them, but they can hide content."


class Polyglot(Rule):
    id = "AIR009"
    severity = Severity.LOW
    title = "File is valid as two formats"
    help = "Different tools will read this file as different formats."


class DataOnly(Rule):
    id = "AIR010"
    severity = Severity.INFO
    title = "Data-only pickle"
    help = "Every global the pickle names is in Airlock's safe set."


# The fail-closed policy (see airlock.core.claims and airlock.core.formats.inert).


class NamedButInvalid(Rule):
    id = "FC001"
    severity = Severity.HIGH
    title = "Named as a model format, but not valid as that format"
    help = "The file's name claims a model format (.safetensors, .pt, .gguf, .onnx, .nemo...) that its "\
        "content fails: a loader picked by the name acts on malformed bytes, and a reviewer trusting the "\
        "name is misled."


class InertContent(Rule):
    id = "FC002"
    severity = Severity.INFO
    title = "Known-inert content"
    help = "Text, images, tokenizer data, JSON without templates or code references, and YAML without Hydra "\
        "targets: loaders read them as data, no model loader runs them."


class EmptyFile(Rule):
    id = "FC003"
    severity = Severity.INFO
    title = "Empty file"
    help = "The file has no bytes: there is nothing to inspect (and nothing a loader could use)."
