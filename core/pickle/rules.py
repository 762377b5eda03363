"""The pickle machine's rules. Ids are stable; the machine emits them as `Event`s."""

from __future__ import annotations

from airlock.core.findings import Rule, Severity
from airlock.core.pickle import machine


class DangerousGlobal(Rule):
    id = machine.DANGEROUS_GLOBAL
    severity = Severity.CRITICAL
    title = "Dangerous global referenced"
    help = "The pickle imports a global from the denylist (command execution, file or network access, "\
        "nested loaders). No model file has a reason to name it, called or not."


class ComputedCallable(Rule):
    id = machine.COMPUTED_CALLABLE
    severity = Severity.HIGH
    title = "Callable computed at load time"
    help = "What is imported or called depends on values only known when the pickle runs."


class ExtensionCode(Rule):
    id = machine.EXTENSION_CODE
    severity = Severity.HIGH
    title = "Extension registry opcode"
    help = "EXT1/EXT2/EXT4 import whatever the loading process registered under that code."


class UnknownFunction(Rule):
    id = machine.UNKNOWN_FUNCTION
    severity = Severity.HIGH
    title = "Unknown function called"
    help = "A function outside Airlock's safe set is called while loading; it cannot be proven safe."


class ThirdPartyClass(Rule):
    id = machine.THIRD_PARTY_CLASS
    severity = Severity.MEDIUM
    title = "Third-party class rebuilt"
    help = "Loading rebuilds an instance of a class from another package (an estimator, a module "\
        "object); that package's code runs."


class DangerousCall(Rule):
    id = machine.DANGEROUS_CALL
    severity = Severity.CRITICAL
    title = "Dangerous call"
    help = "Loading calls a denylisted function: this file runs code when loaded."


class PlantedSetstate(Rule):
    id = machine.PLANTED_SETSTATE
    severity = Severity.HIGH
    title = "__setstate__ planted through BUILD"
    help = "BUILD puts a __setstate__ into an instance dict so that a later BUILD calls it."


class BuildOnGlobal(Rule):
    id = machine.BUILD_ON_GLOBAL
    severity = Severity.HIGH
    title = "BUILD rewrites a global"
    help = "BUILD on a module, class or function sets attributes on it for the whole process."


class MutatesGlobal(Rule):
    id = machine.MUTATES_GLOBAL
    severity = Severity.HIGH
    title = "Pickle changes a module-level object"
    help = "SETITEM, APPEND or ADDITEMS on an imported global (a registry, a module's dict) changes "\
        "it for the whole process; copyreg's extension registry is one such target."


class FrameStraddle(Rule):
    id = machine.FRAME_STRADDLE
    severity = Severity.HIGH
    title = "Opcode crosses a FRAME boundary"
    help = "Pickle writers never let an opcode cross the end of a frame. CPython's C unpickler reading "\
        "a file without peek() (torch.load reads zip members from io.BytesIO) skips the rest of the "\
        "frame and reads the argument from after it, so the stream names other globals for that loader."


class SharedMemo(Rule):
    id = machine.SHARED_MEMO
    severity = Severity.HIGH
    title = "Pickle relies on the memo of the pickle before it"
    help = "A fresh Unpickler fails on it, but a loader that calls load() twice on one Unpickler keeps "\
        "the memo and runs it: a stacked payload built from names the first pickle stored."
