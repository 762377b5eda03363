"""OpenSSF model signing (the `model-signing` package, v1.x), verified offline.

The cryptography is the library's: its verifier checks the Sigstore bundle's DSSE signature against
a PEM elliptic-curve public key (`--key`) or a certificate chain (`--cert`), then compares the
signed manifest of per-file digests with the folder. When that comparison fails, the library says
so in one sentence; to name every changed, added and removed file, this module re-reads the
manifest from the (now authenticated) bundle and compares it with its own hashes of the folder.

model-signing is imported only here and only to verify: it is heavy (~0.3 s) and needs pyopenssl
at import, which it does not declare (Airlock depends on it explicitly).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import sys
from typing import Any

from airlock.core.errors import AirlockError

DEFAULT_NAME = "model.sig"
MAX_SIGNATURE_BYTES = 256 * 1024 * 1024
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")
SUPPORTED_CURVES = ("secp256r1", "secp384r1", "secp521r1")


class BadKey(AirlockError):
    """The key or certificate given to verify with cannot be used (exit 2)."""


class SignatureResult:
    """What verifying a folder's signature found.

    state: "verified" | "mismatch" (authentic signature, other content) | "invalid" (the signature
    does not verify or cannot be read) | "unsigned" | "not-verified" (signed, no key given).
    """

    __slots__ = ("added", "changed", "message", "removed", "signature", "signer", "state")

    def __init__(self, state: str, signature: str | None, *, signer: str = "", message: str = "") -> None:
        self.state = state
        self.signature = signature
        self.signer = signer
        self.message = message
        self.changed: list[tuple[str, str, str]] = []  # (file, signed digest, actual digest)
        self.added: list[str] = []
        self.removed: list[str] = []

    def summary(self) -> str:
        """One line for a view: "signed by …", "signature does not match: …" or "unsigned"."""
        if self.state == "verified":
            return f"signed by {self.signer}"
        if self.state == "mismatch":
            parts = [f"changed {', '.join(c[0] for c in self.changed)}" if self.changed else "",
                     f"added {', '.join(self.added)}" if self.added else "",
                     f"removed {', '.join(self.removed)}" if self.removed else ""]
            return "signature does not match: " + "; ".join(p for p in parts if p)
        if self.state == "invalid":
            return f"signature does not verify: {self.message}"
        if self.state == "not-verified":
            return "signed, not verified (no key or certificate given)"
        return "unsigned"


def signature_path(folder: str, signature: str | None = None) -> str:
    return signature if signature is not None else os.path.join(folder, DEFAULT_NAME)


def state_without_key(folder: str, signature: str | None = None) -> SignatureResult:
    path = signature_path(folder, signature)
    if os.path.isfile(path):
        return SignatureResult("not-verified", path)
    return SignatureResult("unsigned", None)


def check_key(key: str) -> str:
    """Refuse, with the reason, a key model-signing 1.1.1 cannot verify with; returns its
    fingerprint (sha256 of the PEM public key, as the library records it in a bundle)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        with open(key, "rb") as fh:
            data = fh.read(1024 * 1024)
    except OSError as exc:
        raise BadKey(f"cannot read the key {key}: {exc.strerror or exc}") from None
    try:
        public = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise BadKey(f"{key} is not a PEM public key ({exc})") from None
    if not isinstance(public, ec.EllipticCurvePublicKey):
        kind = type(public).__name__.removeprefix("_").replace("PublicKey", "")
        raise BadKey(f"{key} holds an {kind or 'unsupported'} key: model-signing 1.x verifies only "
                        f"elliptic-curve keys ({', '.join(SUPPORTED_CURVES)}); Ed25519 and RSA keys fail "
                        "in the library itself")
    if public.curve.name not in SUPPORTED_CURVES:
        raise BadKey(f"{key} uses the curve {public.curve.name}: model-signing supports only "
                        f"{', '.join(SUPPORTED_CURVES)}")
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def check_certs(certs: list[str]) -> str:
    from cryptography import x509

    subjects = []
    for path in certs:
        try:
            with open(path, "rb") as fh:
                loaded = x509.load_pem_x509_certificates(fh.read(4 * 1024 * 1024))
        except OSError as exc:
            raise BadKey(f"cannot read the certificate {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise BadKey(f"{path} holds no PEM certificate ({exc})") from None
        subjects += [c.subject.rfc4514_string() for c in loaded]
    return subjects[0] if subjects else ""


def verify(folder: str, *, key: str | None = None, certs: list[str] | None = None,
           signature: str | None = None) -> SignatureResult:
    """Verify the folder's signature with a key or certificate chain (raises BadKey for a key
    that cannot be used). A missing signature is "unsigned"."""
    path = signature_path(folder, signature)
    if key is not None:
        signer = f"key sha256:{check_key(key)[:16]}"
    elif certs:
        signer = check_certs(certs)
    else:
        return state_without_key(folder, signature)
    if not os.path.isfile(path):
        return SignatureResult("unsigned", None)
    try:
        from model_signing import verifying
    except ImportError as exc:  # e.g. pyopenssl missing: model-signing imports it without declaring it
        raise BadKey(f"model-signing cannot be imported ({exc}): reinstall Airlock's dependencies") from None

    config = verifying.Config()  # type: ignore[no-untyped-call]
    if key is not None:
        config.use_elliptic_key_verifier(public_key=key)
    else:
        config.use_certificate_verifier(certificate_chain=certs or [])
    if _has_links(folder):
        _follow_links(config, folder, path)
    try:
        # The library prints warnings on stdout, where a JSON report goes.
        with contextlib.redirect_stdout(sys.stderr):
            config.verify(folder, path)
    except ValueError as exc:
        text = str(exc)
        if isinstance(exc, json.JSONDecodeError):  # the library's raw parser message says nothing of what
            text = f"{os.path.basename(path)} is not a signature bundle (not JSON: {text})"
        if not text.startswith("Signature mismatch"):
            return SignatureResult("invalid", path, message=text[:500])
        result = SignatureResult("mismatch", path, signer=signer, message=text[:500])
        _compare(folder, path, result)
        if not (result.changed or result.added or result.removed):
            result.state = "verified"  # the library counted the signature file itself as an extra file
        return result
    except Exception as exc:  # noqa: BLE001 - a malformed bundle reaches the library's parsers
        return SignatureResult("invalid", path, message=f"cannot be read: {type(exc).__name__}: {exc}"[:500])
    return SignatureResult("verified", path, signer=signer)


def _has_links(folder: str) -> bool:
    return any(os.path.islink(os.path.join(d, n)) for d, _, names in os.walk(folder) for n in names)


def _follow_links(config: Any, folder: str, path: str) -> None:
    """A Hugging Face snapshot is made of links to blobs; the library refuses links unless told to
    follow them. Its manifest comparison covers only the files and digests, so hashing the link
    targets with the signature's own method verifies the same content."""
    from model_signing import hashing

    try:
        _, serialization = signed_manifest(path)  # unauthenticated here: it only picks the hashing method
    except (OSError, ValueError, KeyError, TypeError):
        return
    if serialization.get("method", "files") != "files":
        return
    ignored = [str(p) for p in serialization.get("ignore_paths", [])]
    ignored.append(os.path.relpath(os.path.abspath(path), os.path.abspath(folder)))
    config.set_hashing_config(
        hashing.Config()  # type: ignore[no-untyped-call]
        .use_file_serialization(hashing_algorithm=serialization.get("hash_type", "sha256"),
                                allow_symlinks=True)
        .set_ignored_paths(paths=ignored, ignore_git_paths=True)
        .set_allow_symlinks(True))


def signed_manifest(path: str) -> tuple[dict[str, str], dict[str, Any]]:
    """(file → hex digest, serialization parameters) from the bundle's in-toto statement. Call it
    only after the library authenticated the bundle."""
    with open(path, "rb") as fh:
        bundle = json.loads(fh.read(MAX_SIGNATURE_BYTES))
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    predicate = statement.get("predicate", {})
    serialization = predicate.get("serialization", {"method": "files", "hash_type": "sha256"})
    digests: dict[str, str] = {}
    if "resources" in predicate:
        for item in predicate["resources"]:
            digests[str(item["name"])] = str(item["digest"])
    else:  # the v0.2 layout: files as subjects
        for item in statement.get("subject", []):
            digests[str(item["name"])] = str(item["digest"]["sha256"])
    return digests, serialization


def _compare(folder: str, path: str, result: SignatureResult) -> None:
    from airlock.core.provenance import hashing

    try:
        signed, serialization = signed_manifest(path)
    except (OSError, ValueError, KeyError, TypeError):
        return
    method = serialization.get("method", "files")
    algorithm = serialization.get("hash_type", "sha256")
    if method != "files" or algorithm != "sha256":
        # Shard or BLAKE manifests: the library's sentence is all there is to say.
        result.changed.append(("(see message)", "", result.message))
        return
    ignored = {str(p).replace(os.sep, "/") for p in serialization.get("ignore_paths", [])}
    ignored.add(os.path.relpath(os.path.abspath(path), os.path.abspath(folder)).replace(os.sep, "/"))
    actual = {}
    for rel in _files(folder):
        skipped = ignored | set(GIT_PATHS)
        if any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in skipped):
            continue
        actual[rel] = os.path.join(folder, rel)
    for rel in sorted(set(signed) - set(actual)):
        result.removed.append(rel)
    for rel in sorted(set(actual) - set(signed)):
        result.added.append(rel)
    common = sorted(set(actual) & set(signed))
    for rel, digest in zip(common, hashing.hash_files([actual[r] for r in common]), strict=True):
        if digest.sha256 != signed[rel]:
            result.changed.append((rel, signed[rel], digest.sha256 or f"unreadable: {digest.error}"))


def _files(folder: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            out.append(os.path.relpath(os.path.join(dirpath, name), folder).replace(os.sep, "/"))
    return out
