"""The result cache key covers everything that changes an output, each input changed alone.

A copy of the base with only ``rope_theta`` changed in ``config.json`` once got every item from the base's cache
(issue 13): same weights, so same key. Here each input is changed alone and the key (or the model identity in
it) must change; where the change matters the score changes too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from assay.evaluate import runner
from assay.evaluate.backends.base import BackendInfo
from assay.evaluate.backends.hf import load_after_scan, model_identity
from assay.evaluate.cache import ResultCache, library_versions
from assay.evaluate.runner import _cache_key, _render, evaluate_model
from assay.evaluate.tasks import Item, Task, TaskKind
from assay.model.ref import resolve


def _task() -> Task:
    words = ["weights", "tokenizer", "card", "pickle", "signature", "hashes", "base", "cost"]
    items = tuple(Item(id=f"i{k}", context=f"The file that says where a model came from, question {k}, is the",
                       choices=tuple(words[(k + j) % len(words)] for j in range(4)), gold=k % 4) for k in range(8))
    return Task(name="words", version="1", kind=TaskKind.MULTIPLE_CHOICE, items=items)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_json(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _set_rope_theta(cfg: dict) -> None:  # type: ignore[type-arg]
    if isinstance(cfg.get("rope_parameters"), dict):
        cfg["rope_parameters"]["rope_theta"] = 100.0
    else:
        cfg["rope_theta"] = 100.0


def test_a_config_only_change_misses_the_cache_and_changes_the_score(zoo, tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "c.sqlite3")
    task = _task()
    base = load_after_scan(resolve(str(zoo.safetensors_dir)), threads=1)
    first = evaluate_model(base, [task], cache=cache)["words"]
    assert first.cached == 0
    # an exact copy is the same model: every item comes from the cache
    same = load_after_scan(resolve(str(_copy(zoo.safetensors_dir, tmp_path / "same"))), threads=1)
    assert evaluate_model(same, [task], cache=cache)["words"].cached == 8
    # the same weights with only rope_theta changed: nothing from the cache, and other numbers
    rope = _copy(zoo.safetensors_dir, tmp_path / "rope")
    _edit_json(rope / "config.json", _set_rope_theta)
    backend = load_after_scan(resolve(str(rope)), threads=1)
    cached_run = evaluate_model(backend, [task], cache=cache)["words"]
    assert cached_run.cached == 0
    uncached = evaluate_model(backend, [task], cache=None)["words"]
    assert [r.loglikelihoods for r in cached_run.per_item] == [r.loglikelihoods for r in uncached.per_item]
    diffs = [abs(a - b) for r1, r2 in zip(first.per_item, uncached.per_item, strict=True)
             for a, b in zip(r1.loglikelihoods, r2.loglikelihoods, strict=True)]
    assert max(diffs) > 1e-3


@pytest.mark.parametrize(("name", "change"), [
    ("config.json", lambda d: _set_rope_theta(d)),
    ("generation_config.json", lambda d: d.update(temperature=0.3)),
    ("tokenizer_config.json", lambda d: d.update(add_bos_token=not d.get("add_bos_token", False))),
    ("tokenizer.json", lambda d: d.update(truncation={"max_length": 7, "strategy": "LongestFirst", "stride": 0,
                                                       "direction": "Right"})),
])
def test_each_file_beside_the_weights_changes_the_identity(zoo, tmp_path: Path, name: str, change) -> None:
    reference = model_identity(resolve(str(zoo.safetensors_dir)))
    copy = _copy(zoo.safetensors_dir, tmp_path / "m")
    assert model_identity(resolve(str(copy))) == reference
    _edit_json(copy / name, change)
    assert model_identity(resolve(str(copy))) != reference


@pytest.mark.parametrize("name", ["chat_template.jinja", "special_tokens_map.json", "added_tokens.json",
                                  "tokenizer.model", "merges.txt", "vocab.json",
                                  "additional_chat_templates/tool_use.jinja"])
def test_a_tokenizer_file_or_chat_template_added_changes_the_identity(zoo, tmp_path: Path, name: str) -> None:
    reference = model_identity(resolve(str(zoo.safetensors_dir)))
    copy = _copy(zoo.safetensors_dir, tmp_path / "m")
    (copy / name).parent.mkdir(parents=True, exist_ok=True)
    (copy / name).write_text("{{ messages[0]['content'] }}" if name.endswith(".jinja") else "{}", encoding="utf-8")
    assert model_identity(resolve(str(copy))) != reference


def test_the_model_card_does_not_change_the_identity(zoo, tmp_path: Path) -> None:
    reference = model_identity(resolve(str(zoo.safetensors_dir)))
    copy = _copy(zoo.safetensors_dir, tmp_path / "m")
    (copy / "README.md").write_text("---\nlicense: mit\n---\nAnother card.\n", encoding="utf-8")
    assert model_identity(resolve(str(copy))) == reference


def test_the_adapter_config_changes_the_identity(zoo, tmp_path: Path) -> None:
    reference = model_identity(resolve(str(zoo.lora_dir)))
    copy = _copy(zoo.lora_dir, tmp_path / "lora")
    assert model_identity(resolve(str(copy))) == reference
    _edit_json(copy / "adapter_config.json", lambda d: d.update(lora_alpha=2 * int(d.get("lora_alpha") or 8)))
    assert model_identity(resolve(str(copy))) != reference


def test_a_gguf_metadata_change_changes_the_identity(zoo, tmp_path: Path) -> None:
    reference = model_identity(resolve(str(zoo.gguf_f32)))
    data = bytearray(zoo.gguf_f32.read_bytes())
    at = data.find(b"<|im_start|>")  # the chat template lives in the metadata, not in a tensor
    assert at > 0
    data[at + 2:at + 4] = b"IM"
    (tmp_path / "m.gguf").write_bytes(bytes(data))
    assert model_identity(resolve(str(tmp_path / "m.gguf"))) != reference


class _Info:
    def __init__(self, info: BackendInfo) -> None:
        self.info = info

    def apply_chat_template(self, text: str) -> str:
        return text


def _key(info: BackendInfo) -> str:
    task = _task()
    item = task.items[0]
    backend = _Info(info)
    return _cache_key(backend, task, item, _render(task, item, backend))  # type: ignore[arg-type]


def test_backend_settings_scoring_version_and_library_versions_are_in_the_key(monkeypatch) -> None:
    info = BackendInfo(backend="hf", model_id="m", settings={"dtype": "float32", "device": "cpu", "max_length": 512})
    reference = _key(info)
    assert _key(info) == reference
    assert _key(BackendInfo(backend="openai", model_id="m", settings=info.settings)) != reference
    for setting, value in (("dtype", "bfloat16"), ("device", "cuda"), ("max_length", 256)):
        assert _key(BackendInfo(backend="hf", model_id="m", settings={**info.settings, setting: value})) != reference
    monkeypatch.setattr(runner, "SCORING_VERSION", runner.SCORING_VERSION + "x")
    assert _key(info) != reference
    monkeypatch.undo()
    assert _key(info) == reference
    real = library_versions()
    for lib in ("torch", "transformers"):
        other = {**real, lib: real[lib] + "1"}
        monkeypatch.setattr(runner, "library_versions", lambda other=other: other)
        assert _key(info) != reference
        monkeypatch.undo()


def test_library_versions_are_major_minor() -> None:
    versions = library_versions()
    assert set(versions) == {"torch", "transformers"}
    for v in versions.values():
        assert v.count(".") == 1 and all(part.isdigit() for part in v.split("."))
