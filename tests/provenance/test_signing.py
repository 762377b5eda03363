"""OpenSSF model signing: a folder signed with model-signing and a key made here, then changed."""

import datetime
import json
import os

import model_signing
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from airlock.core.cli import main
from airlock.core.provenance import signing


def _pem_private(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_public(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def signed(tmp_path):
    """A model folder signed as `model_signing sign key` does (the signature itself ignored)."""
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (model / "config.json").write_bytes(b'{"model_type": "bert"}')
    (model / "sub" / "tokenizer.json").write_bytes(b'{"version": "1.0"}')
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "key.pem").write_bytes(_pem_private(key))
    (tmp_path / "pub.pem").write_bytes(_pem_public(key))
    sig = model / "model.sig"
    model_signing.signing.Config().use_elliptic_key_signer(private_key=tmp_path / "key.pem").set_hashing_config(
        model_signing.hashing.Config().set_ignored_paths(paths=[sig])).sign(model, sig)
    return model, tmp_path / "pub.pem"


def verify_json(capsys, *argv):
    code = main(["verify", "--format", "json", "--no-policy", *argv])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_signed_folder_verifies(signed, capsys):
    model, pub = signed
    code, doc, _ = verify_json(capsys, "--key", str(pub), str(model))
    assert code == 0
    assert all(e["severity"] == "none" for e in doc["files"]), doc
    result = signing.verify(str(model), key=str(pub))
    assert result.state == "verified" and result.summary().startswith("signed by key sha256:")


def test_changed_added_and_removed_files_are_each_named(signed, capsys):
    model, pub = signed
    (model / "config.json").write_bytes(b'{"model_type": "evil"}')
    (model / "modeling_evil.py").write_bytes(b"import os\n")
    os.remove(model / "sub" / "tokenizer.json")
    code, doc, _ = verify_json(capsys, "--key", str(pub), str(model))
    assert code == 1
    by_name = {os.path.relpath(e["path"], model): e for e in doc["files"]}
    assert by_name["config.json"]["findings"][0]["rule"] == "PRV001"
    assert by_name["config.json"]["severity"] == "critical"
    assert by_name["modeling_evil.py"]["findings"][0]["rule"] == "PRV003"
    assert by_name[os.path.join("sub", "tokenizer.json")]["findings"][0]["rule"] == "PRV002"
    summary = signing.verify(str(model), key=str(pub)).summary()
    assert summary.startswith("signature does not match:")
    for name in ("config.json", "modeling_evil.py", "sub/tokenizer.json"):
        assert name in summary


def test_wrong_key_is_critical(signed, capsys, tmp_path):
    model, _ = signed
    other = tmp_path / "other.pem"
    other.write_bytes(_pem_public(ec.generate_private_key(ec.SECP256R1())))
    code, doc, _ = verify_json(capsys, "--key", str(other), str(model))
    assert code == 1
    finding = doc["files"][0]["findings"][0]
    assert finding["rule"] == "PRV007" and finding["severity"] == "critical"


def test_tampered_signature_file_is_critical(signed, capsys):
    model, pub = signed
    bundle = json.loads((model / "model.sig").read_text())
    bundle["dsseEnvelope"]["payload"] = bundle["dsseEnvelope"]["payload"][:-8] + "AAAAAAA="
    (model / "model.sig").write_text(json.dumps(bundle))
    code, doc, _ = verify_json(capsys, "--key", str(pub), str(model))
    assert code == 1 and doc["files"][0]["findings"][0]["rule"] == "PRV007"


def test_a_signature_file_that_is_not_json_says_so(signed, capsys):
    """Regression (new-user trial): garbage in model.sig read "signature does not verify: Expecting value:
    line 1 column 1 (char 0)"."""
    model, pub = signed
    (model / "model.sig").write_bytes(b"\x00garbage")
    code, doc, _ = verify_json(capsys, "--key", str(pub), str(model))
    finding = doc["files"][0]["findings"][0]
    assert code == 1 and finding["rule"] == "PRV007" and "model.sig is not a signature bundle" in finding["message"]


@pytest.mark.parametrize("make", [lambda: ed25519.Ed25519PrivateKey.generate(),
                                  lambda: rsa.generate_private_key(65537, 2048)], ids=["ed25519", "rsa"])
def test_keys_model_signing_cannot_use_exit_2_and_say_so(signed, capsys, tmp_path, make):
    model, _ = signed
    key = tmp_path / "bad.pem"
    key.write_bytes(_pem_public(make()))
    assert main(["verify", "--key", str(key), str(model)]) == 2
    err = capsys.readouterr().err
    assert "elliptic-curve" in err and "Traceback" not in err


def test_key_and_cert_together_exit_2(signed, capsys):
    """`[--key PUBKEY | --cert CERT]`: one or the other; given both, one was silently ignored."""
    model, public_key = signed
    with pytest.raises(SystemExit) as stop:
        main(["verify", "--key", str(public_key), "--cert", str(public_key), str(model)])
    assert stop.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_a_key_or_chain_given_for_an_unsigned_folder_is_high(signed, capsys, tmp_path):
    """Regression: `verify --key K folder` passed (exit 0, info "unsigned") when the folder had no signature,
    so a CI step meant to enforce signatures let an unsigned model through."""
    model, public_key = signed
    os.remove(model / "model.sig")
    other = tmp_path / "other"
    other.mkdir()
    (other / "weights.bin").write_bytes(b"w")
    ca = sign_with_certificate(tmp_path, other, other / "model.sig")  # a real chain, for another folder
    for option, value in (("--key", public_key), ("--cert", ca)):
        code, doc, _ = verify_json(capsys, option, str(value), str(model))
        [finding] = [f for e in doc["files"] for f in e["findings"]]
        assert code == 1 and finding["rule"] == "PRV005" and finding["severity"] == "high", doc
        assert "verifies nothing" in finding["message"]


def test_not_a_key_exits_2(signed, capsys, tmp_path):
    model, _ = signed
    (tmp_path / "junk.pem").write_text("hello")
    assert main(["verify", "--key", str(tmp_path / "junk.pem"), str(model)]) == 2
    assert "not a PEM public key" in capsys.readouterr().err


def test_without_a_key_signed_and_unsigned_are_info_or_high_by_policy(signed, capsys, tmp_path):
    model, _ = signed
    code, doc, _ = verify_json(capsys, str(model))
    assert code == 0
    [finding] = [f for e in doc["files"] for f in e["findings"]]
    assert finding["rule"] == "PRV006" and finding["severity"] == "info"
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "model.safetensors").write_bytes(b"x")
    code, doc, _ = verify_json(capsys, str(plain))
    assert code == 0 and doc["files"][0]["findings"][0]["rule"] == "PRV005"
    policy = tmp_path / "strict.toml"
    policy.write_text("require-signature = true\n")
    for folder, rule in ((plain, "PRV005"), (model, "PRV006")):
        assert main(["verify", "--format", "json", "--policy", str(policy), str(folder)]) == 1
        doc = json.loads(capsys.readouterr().out)
        finding = next(f for e in doc["files"] for f in e["findings"])
        assert finding["rule"] == rule and finding["severity"] == "high"


def sign_with_certificate(tmp_path, model, sig):
    """Sign `model` into `sig` with a leaf certificate issued by a CA made here; returns the CA's PEM."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Airlock test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "model signer")]))
            .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (tmp_path / "leaf.key").write_bytes(_pem_private(leaf_key))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    hashing = model_signing.hashing.Config().set_ignored_paths(paths=[sig])
    model_signing.signing.Config().use_certificate_signer(
        private_key=tmp_path / "leaf.key", signing_certificate=tmp_path / "leaf.pem",
        certificate_chain=[tmp_path / "ca.pem"]).set_hashing_config(hashing).sign(model, sig)
    return tmp_path / "ca.pem"


def test_certificate_chain(tmp_path, capsys):
    """Signed with a leaf certificate issued by a CA made here; verified against the CA."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"weights")
    sig = tmp_path / "detached.sig"
    sign_with_certificate(tmp_path, model, sig)
    code, doc, _ = verify_json(capsys, "--cert", str(tmp_path / "ca.pem"), "--signature", str(sig), str(model))
    assert code == 0, doc
    (model / "weights.bin").write_bytes(b"other weights")
    code, doc, _ = verify_json(capsys, "--cert", str(tmp_path / "ca.pem"), "--signature", str(sig), str(model))
    assert code == 1
    assert [f["rule"] for e in doc["files"] for f in e["findings"]] == ["PRV001"]


def test_signature_shipped_in_a_hugging_face_snapshot(tmp_path, capsys):
    """The publisher signs the repository's files; the cache holds them as links to blobs."""
    from provenance.hf_fake import COMMIT_1, add_file

    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "key.pem").write_bytes(_pem_private(key))
    (tmp_path / "pub.pem").write_bytes(_pem_public(key))
    files = {"config.json": b'{"model_type": "bert"}', "model.safetensors": b"\x00" * 64}
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    for name, data in files.items():
        (upstream / name).write_bytes(data)
    sig = upstream / "model.sig"
    model_signing.signing.Config().use_elliptic_key_signer(private_key=tmp_path / "key.pem").set_hashing_config(
        model_signing.hashing.Config().set_ignored_paths(paths=["model.sig"])).sign(upstream, sig)
    cache = tmp_path / "hub"
    for name, data in [*files.items(), ("model.sig", sig.read_bytes())]:
        pointer = add_file(cache, "org/signed", COMMIT_1, name, data, lfs=name.endswith(".safetensors"),
                           revision="main")
    snapshot = pointer.parent
    code, doc, _ = verify_json(capsys, "--key", str(tmp_path / "pub.pem"), str(cache))
    assert code == 0, doc
    assert signing.verify(str(snapshot), key=str(tmp_path / "pub.pem")).state == "verified"
    os.chmod(os.path.realpath(snapshot / "config.json"), 0o644)
    with open(os.path.realpath(snapshot / "config.json"), "wb") as fh:
        fh.write(b'{"model_type": "evil"}')
    result = signing.verify(str(snapshot), key=str(tmp_path / "pub.pem"))
    assert result.state == "mismatch" and [c[0] for c in result.changed] == ["config.json"]
