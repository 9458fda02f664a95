"""`assay inspect` end to end: tables, JSON, and every bad input of issue 2 -> one line on stderr, exit 2."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np

from tests.model.conftest import assert_one_line_error, run_unprivileged


def test_table(zoo, cli) -> None:  # type: ignore[no-untyped-def]
    run = cli("inspect", zoo.safetensors_dir)
    assert run.rc == 0, run.err
    for text in ("LlamaForCausalLM", f"{zoo.n_params:,}", "model.safetensors", "safetensors", "weights",
                 "apache-2.0", "edge", "tokenizer_config.json"):
        assert text in run.out, text


def test_json(zoo, cli) -> None:  # type: ignore[no-untyped-def]
    run = cli("inspect", zoo.sharded_dir, "--json")
    assert run.rc == 0, run.err
    doc = json.loads(run.out)  # exactly one document, nothing else on stdout
    assert doc["schema"] == "assay.inventory/1"
    assert doc["parameters"] == zoo.n_params
    assert doc["architecture"] == "LlamaForCausalLM"
    assert doc["dtypes"] == {"F32": zoo.n_params}
    assert doc["card"]["base_model"] and doc["card"]["license"] == "apache-2.0"
    assert doc["context_length"] == zoo.context_length and doc["vocab_size"] == zoo.vocab_size
    assert doc["memory"]["16bit"] == 2 * zoo.n_params and doc["tier"] == "edge"
    formats = {f["path"]: (f["format"], f["role"]) for f in doc["files"]}
    assert formats["model.safetensors.index.json"] == ("json", "index")
    assert all(v == ("safetensors", "weights") for k, v in formats.items() if k.endswith(".safetensors"))


def test_json_for_every_format(zoo, cli) -> None:  # type: ignore[no-untyped-def]
    for target, fmt in ((zoo.bin_dir, "torch-zip"), (zoo.legacy_pickle, "pickle"), (zoo.gguf_f32, "gguf"),
                        (zoo.lora_dir, "safetensors")):
        run = cli("inspect", target, "--json")
        assert run.rc == 0, (target, run.err)
        doc = run.json()
        assert doc["weights_format"] == fmt
        if target != zoo.lora_dir:
            assert doc["parameters"] == zoo.n_params
    doc = cli("inspect", zoo.lora_dir, "--json").json()
    assert doc["adapter"]["r"] == 4 and sorted(doc["adapter"]["target_modules"]) == ["q_proj", "v_proj"]
    assert doc["adapter"]["base_model_name_or_path"] == str(zoo.safetensors_dir)


def test_help_has_an_example(cli) -> None:  # type: ignore[no-untyped-def]
    run = cli("inspect", "--help")
    assert run.rc == 0 and "assay inspect ./" in run.out and "--json" in run.out


# ------------------------------------------------------------------------------------------ bad input


def test_missing_path(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert_one_line_error(cli("inspect", tmp_path / "nope"), "no such model")


def test_empty_folder(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert_one_line_error(cli("inspect", tmp_path), "empty")


def test_permission_denied_file(zoo, locked_tmp: Path) -> None:  # type: ignore[no-untyped-def]
    p = locked_tmp / "model.safetensors"
    shutil.copyfile(zoo.safetensors_dir / "model.safetensors", p)
    p.chmod(0)
    run = run_unprivileged(["inspect", str(p)])
    assert_one_line_error(run, "permission denied")


def test_permission_denied_folder(zoo, locked_tmp: Path) -> None:  # type: ignore[no-untyped-def]
    d = locked_tmp / "m"
    shutil.copytree(zoo.safetensors_dir, d)
    d.chmod(0)
    assert_one_line_error(run_unprivileged(["inspect", str(d)]), "permission denied")


def test_folder_with_unreadable_files_lists_them(zoo, locked_tmp: Path) -> None:  # type: ignore[no-untyped-def]
    d = locked_tmp / "m"
    shutil.copytree(zoo.safetensors_dir, d)
    (d / "tokenizer.json").chmod(0)
    run = run_unprivileged(["inspect", str(d), "--json"])
    assert run.rc == 0, run.err
    doc = run.json()
    assert doc["parameters"] == zoo.n_params
    assert doc["unreadable"] == [{"path": "tokenizer.json", "role": "tokenizer", "error": "permission denied"}]
    table = run_unprivileged(["inspect", str(d)])
    assert table.rc == 0 and "permission denied" in table.out and "tokenizer.json" in table.err


def test_only_weight_file_unreadable(zoo, locked_tmp: Path) -> None:  # type: ignore[no-untyped-def]
    d = locked_tmp / "m"
    shutil.copytree(zoo.safetensors_dir, d)
    (d / "model.safetensors").chmod(0)
    assert_one_line_error(run_unprivileged(["inspect", str(d)]), "model.safetensors", "permission denied")


def test_random_file_named_model_safetensors(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "model.safetensors"
    p.write_bytes(bytes(np.random.default_rng(1).integers(0, 256, 10_000, dtype=np.uint8)))
    assert_one_line_error(cli("inspect", p), "not a model checkpoint", "unknown")
    # The same file as the only weights of a folder.
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    assert_one_line_error(cli("inspect", tmp_path), "model.safetensors", "not a known weight format")


def test_text_file_named_model_safetensors(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "model.safetensors"
    p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")  # an LFS pointer
    assert_one_line_error(cli("inspect", p), "not a model checkpoint", "text")


def test_truncated_safetensors_header(zoo, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "model.safetensors"
    data = (zoo.safetensors_dir / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    p.write_bytes(data[: 8 + n // 2])
    assert_one_line_error(cli("inspect", p), "truncated")


def test_truncated_safetensors_data(zoo, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "m"
    shutil.copytree(zoo.safetensors_dir, d)
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-1000])
    assert_one_line_error(cli("inspect", d), "model.safetensors is truncated")


def test_truncated_gguf(zoo, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = zoo.gguf_q8_0.read_bytes()
    for cut in (100, len(data) // 2):
        p = tmp_path / f"cut-{cut}.gguf"
        p.write_bytes(data[:cut])
        assert_one_line_error(cli("inspect", p), "truncated")


def test_index_names_missing_shard(zoo, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "m"
    shutil.copytree(zoo.sharded_dir, d)
    shard = sorted(d.glob("model-*.safetensors"))[0]
    shard.unlink()
    assert_one_line_error(cli("inspect", d), "model.safetensors.index.json", shard.name, "missing")


def test_malformed_index(zoo, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "m"
    shutil.copytree(zoo.sharded_dir, d)
    (d / "model.safetensors.index.json").write_text('{"metadata": {}, "weight_map": ')
    assert_one_line_error(cli("inspect", d), "model.safetensors.index.json", "not valid JSON")


def test_malformed_config(zoo, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "m"
    shutil.copytree(zoo.safetensors_dir, d)
    (d / "config.json").write_text('{"model_type": "llama",, }')
    assert_one_line_error(cli("inspect", d), "config.json", "not valid JSON")
    (d / "config.json").write_text("[1, 2]")
    assert_one_line_error(cli("inspect", d), "config.json", "not a JSON object")


def test_malformed_adapter_config(zoo, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "lora"
    shutil.copytree(zoo.lora_dir, d)
    (d / "adapter_config.json").write_text("{")
    assert_one_line_error(cli("inspect", d), "adapter_config.json", "not valid JSON")


def test_not_a_model_file(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "config.json"
    p.write_text('{"a": 1}')
    assert_one_line_error(cli("inspect", p), "not a model checkpoint", "json")


def test_unknown_hub_reference(cli, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert_one_line_error(cli("inspect", "acme/not-cached"), "not in the local Hugging Face cache", "--download")


def test_hostile_pickle_is_described_not_run(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A booby-trapped pytorch_model.bin: inspect walks its opcodes, runs nothing, finds no tensors."""
    import pickle

    marker = tmp_path / "executed"

    class Boom:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    (tmp_path / "pytorch_model.bin").write_bytes(pickle.dumps({"weight": Boom()}, protocol=2))
    run = cli("inspect", tmp_path, "--json")
    assert run.rc == 0, run.err
    doc = run.json()
    assert not marker.exists()
    assert doc["weights_format"] == "pickle" and doc["parameters"] is None
    assert any("no tensors found" in n for n in doc["notes"])


def test_truncated_extra_weight_file_is_listed_not_ok(zoo, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "m"
    shutil.copytree(zoo.safetensors_dir, d)
    (d / "extra.gguf").write_bytes(zoo.gguf_f32.read_bytes()[:500])
    run = cli("inspect", d, "--json")
    assert run.rc == 0
    doc = run.json()
    assert doc["parameters"] == zoo.n_params  # still described from model.safetensors
    assert [u["path"] for u in doc["unreadable"]] == ["extra.gguf"]
    assert "truncated" in doc["unreadable"][0]["error"]
    assert "extra.gguf" in run.err and "warning" in run.err  # warnings on stderr, also with --json


def test_debug_flag_after_the_command_shows_the_traceback(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = cli("inspect", tmp_path / "nope", "--debug")  # where "run with --debug" makes users put it
    assert run.rc == 2 and "Traceback" in run.err and "No such option" not in run.err
    assert run.err.strip().splitlines()[-1].startswith("error: no such model")


def test_click_usage_errors_are_one_line(cli) -> None:  # type: ignore[no-untyped-def]
    run = cli("inspect", "--no-such-flag", "x")
    assert run.rc == 2 and run.out == ""
    assert run.err.strip() == "error: No such option '--no-such-flag'. (see `assay inspect --help`)"


def test_assay_alone_still_prints_its_help(cli) -> None:  # type: ignore[no-untyped-def]
    run = cli()
    assert run.rc == 2 and "Usage: assay" in run.err and "assay scan MODEL" in run.err
