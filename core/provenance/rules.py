"""Rules of the chain of custody (ids PRV0xx): hashes, manifests, the Hugging Face cache, pins,
signatures and the policy file. Imported by `rule_catalog.all_rules()` so that SARIF describes them."""

from __future__ import annotations

from airlock.core.findings import Rule, Severity


class ContentMismatch(Rule):
    id = "PRV001"
    severity = Severity.CRITICAL
    title = "Content does not match its recorded hash"
    help = ("A manifest, lock file, signature or the Hugging Face cache's own blob name records another hash "
            "for this file: it is not the file that was recorded, reviewed or signed.")


class FileMissing(Rule):
    id = "PRV002"
    severity = Severity.HIGH
    title = "Recorded file missing"
    help = "A manifest, lock file, signature or snapshot lists a file that is not there."


class ExtraFile(Rule):
    id = "PRV003"
    severity = Severity.HIGH
    title = "File not recorded"
    help = "A model or configuration file that the lock file or signature does not list was added."


class NotInAnySnapshot(Rule):
    id = "PRV004"
    severity = Severity.INFO
    title = "Hugging Face blob not in any snapshot"
    help = ("A blob of a Hugging Face cache that no snapshot links to (an orphan, or an .incomplete "
            "download): nothing loads it through the cache, but it was scanned all the same.")


class Unsigned(Rule):
    id = "PRV005"
    severity = Severity.INFO
    title = "Model folder is not signed"
    help = "No OpenSSF model signature (model.sig) was found. The policy's require-signature makes this high."


class SignedNotVerified(Rule):
    id = "PRV006"
    severity = Severity.INFO
    title = "Signed, not verified"
    help = ("The folder carries a model signature, but no key or certificate was given to verify it "
            "(--key / --cert). The policy's require-signature makes this high.")


class SignatureInvalid(Rule):
    id = "PRV007"
    severity = Severity.CRITICAL
    title = "Signature does not verify"
    help = "The model signature is not valid for the given key or certificate, or cannot be read."


class RevisionMismatch(Rule):
    id = "PRV008"
    severity = Severity.HIGH
    title = "Revision differs from the pin"
    help = "The lock file pins another commit of this Hugging Face repository than the one present."


class FloatingPin(Rule):
    id = "PRV009"
    severity = Severity.MEDIUM
    title = "Pin names a branch or tag"
    help = "A pin should name a 40-hex commit: a branch or tag can move to other content."


class Rescan(Rule):
    id = "PRV010"
    severity = Severity.INFO
    title = "Findings changed since the lock: rescan"
    help = ("The file is the one locked, but scanning it now gives other findings (a newer Airlock or "
            "policy): review the new findings.")


class FormatRefused(Rule):
    id = "PRV011"
    severity = Severity.HIGH
    title = "Format refused by policy"
    help = "The policy file lists this format under refuse-formats."


class CacheLayout(Rule):
    id = "PRV012"
    severity = Severity.HIGH
    title = "Hugging Face cache entry is not what the layout promises"
    help = ("A snapshot file links outside its repository's blobs/, is a plain file where the repository's "
            "other snapshot files link to their blobs, or a snapshot is not named by a commit: "
            "the cache was altered by something other than huggingface_hub.")


class Unverifiable(Rule):
    id = "PRV013"
    severity = Severity.INFO
    title = "No recorded hash to check against"
    help = ("The file has no hash to compare with (a snapshot file copied rather than linked, a blob not "
            "named by a hash).")
