"""The GGUF rules (GG001 to GG008): what the header reader (`gguf`) and the tensor checks
(`gguf_tensors`) report.

A leaf both of them import, so the rules sit below the two stages that report them and neither
stage has to import the other back.
"""

from __future__ import annotations

from airlock.core.findings import Rule, Severity


class Truncated(Rule):
    id = "GG001"
    severity = Severity.HIGH
    title = "GGUF file truncated"
    help = "The file ends before what its header declares (a partial download, or a count/length that lies)."
    incomplete = True  # what the header declares past the end was never read


class MalformedHeader(Rule):
    id = "GG002"
    severity = Severity.HIGH
    title = "Malformed GGUF header"
    help = ("An unknown version or value type, a bad alignment or a key of the wrong type: llama.cpp "
            "refuses it.")
    incomplete = True  # the reader stops at an unknown type; a file llama.cpp refuses is not vouched for


class SpecViolation(Rule):
    id = "GG008"
    severity = Severity.LOW
    title = "GGUF header breaks the specification"
    help = ("A key that is not ASCII lower_snake_case segments joined by dots (or longer than 65,535 "
            "bytes), a string value that is not UTF-8, a boolean byte other than 0 or 1: the spec calls "
            "these invalid, but llama.cpp reads them. A conforming writer never produces them.")


class DuplicateKey(Rule):
    id = "GG003"
    severity = Severity.HIGH
    title = "Duplicate GGUF key"
    help = "Two values under one key: readers disagree on which one counts (llama.cpp refuses the file)."


class DuplicateTensor(Rule):
    id = "GG004"
    severity = Severity.HIGH
    title = "Duplicate tensor name"
    help = "Two tensors share a name: readers disagree on which one loads (llama.cpp refuses the file)."


class UnknownTensorType(Rule):
    id = "GG005"
    severity = Severity.HIGH
    title = "Unknown tensor type"
    help = "A tensor's type is not a known ggml type: its size, and the layout after it, cannot be checked."


class BadShape(Rule):
    id = "GG006"
    severity = Severity.HIGH
    title = "Invalid tensor shape"
    help = ("More than 4 dimensions, a dimension that is negative as int64, a product that overflows int64, "
            "a first dimension that is not a multiple of the type's block size, or a name too long.")


class BadLayout(Rule):
    id = "GG007"
    severity = Severity.HIGH
    title = "Tensor data layout differs from llama.cpp's"
    help = ("llama.cpp requires each tensor at the aligned end of the previous one; holes, overlaps and "
            "reordering are refused and let two readers see different data.")
