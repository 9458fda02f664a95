"""Tiny real model folders (safetensors written with numpy, no torch) and vet results about them.

The folders are real: the hub client hashes them, computes their weights roots and fingerprints. The vet results
are built from chosen numbers through the report tests' builders (the real ``vet_document``), so every expectation
in the hub tests follows from the numbers passed in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from assay.verdict import StageOutcome
from tests.report.builders import lineage_doc, make_result, metric, outcomes, scan_doc

TASK = "builtin:knowledge"
TASK2 = "builtin:reference"


def _tensors(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = {"model.embed_tokens.weight": rng.standard_normal((96, 32)).astype(np.float32),
         "model.norm.weight": np.ones(32, dtype=np.float32)}
    for i in range(2):
        for name in ("self_attn.q_proj", "self_attn.k_proj", "mlp.up_proj"):
            t[f"model.layers.{i}.{name}.weight"] = (rng.standard_normal((32, 32)) * 0.1).astype(np.float32)
    return t


def save_folder(path: Path, tensors: dict[str, np.ndarray], *, shards: int = 1, licence: str = "apache-2.0") -> Path:
    from safetensors.numpy import save_file

    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                                                  "hidden_size": 32, "num_hidden_layers": 2}))
    (path / "README.md").write_text(f"---\nlicense: {licence}\n---\n# {path.name}\n")
    names = sorted(tensors)
    if shards == 1:
        save_file({n: tensors[n] for n in names}, str(path / "model.safetensors"))
        return path
    weight_map = {}
    for k in range(shards):
        part = names[k::shards]
        fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: tensors[n] for n in part}, str(path / fname))
        weight_map.update({n: fname for n in part})
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return path


@dataclass(frozen=True)
class ModelSet:
    root: Path
    base: Path
    finetune: Path
    broken: Path
    reupload: Path
    impostor: Path


def build_models(root: Path) -> ModelSet:
    base_t = _tensors(0)
    rng = np.random.default_rng(7)
    fine_t = {k: v + (rng.standard_normal(v.shape) * 0.002).astype(np.float32) if v.ndim == 2 else v
              for k, v in base_t.items()}
    broken_t = {k: v + (rng.standard_normal(v.shape) * 0.05).astype(np.float32) if v.ndim == 2 else v
                for k, v in base_t.items()}
    return ModelSet(root=root,
                    base=save_folder(root / "base", base_t),
                    finetune=save_folder(root / "honest-finetune", fine_t),
                    broken=save_folder(root / "broken-finetune", broken_t, licence="llama3.1"),
                    reupload=save_folder(root / "Ultimate-Lord", base_t, shards=2),
                    impostor=save_folder(root / "impostor", _tensors(1234), licence="mit"))


def vet_doc(folder: Path, *, delta: float = 0.01, half_width: float = 0.02, relation: str = "finetune",
            base: Path | None | bool = None, licence: str = "apache-2.0", parameters: int = 12_000,
            tasks: tuple[str, ...] = (TASK,)) -> dict[str, Any]:
    """An ``assay.vet/1`` document about ``folder`` compared with ``base`` (verdict from the real policy)."""
    from assay.vet import vet_document

    if base is False:  # vetted alone: no base, no comparison
        stages = outcomes(
            inventory={"architecture": "LlamaForCausalLM", "parameters": parameters}, scan=scan_doc(),
            signature=StageOutcome.not_applicable("signature", "no model.sig"),
            evaluation={"schema": "assay.eval/1", "settings": {"backend": "hf", "dtype": "float32", "limit": 30,
                                                               "tasks": list(tasks)},
                        "tasks": {t: {"n": 30, "metrics": {"acc": 0.50 + delta}} for t in tasks}},
            card={"findings": [], "licence": licence},
            licence={"schema": "assay.licence/1", "licence": licence, "violations": []})
        return vet_document(make_result(stages, tmp=folder.parent, name=folder.name, base=None))
    base = base if isinstance(base, Path) else folder.parent / "base"
    # the p-value agrees with the interval: significant exactly when the interval excludes zero
    p = 1e-6 if abs(delta) > half_width else 0.5
    comparison = {t: {"acc": metric(0.50, 0.50 + delta, half_width, p=p)} for t in tasks}
    stages = outcomes(
        inventory={"architecture": "LlamaForCausalLM", "parameters": parameters},
        scan=scan_doc(), base_scan=scan_doc(), signature=StageOutcome.not_applicable("signature", "no model.sig"),
        lineage=lineage_doc(relation, change=abs(delta)),
        evaluation={"schema": "assay.eval/1", "settings": {"backend": "hf", "dtype": "float32", "limit": 30,
                                                           "tasks": list(tasks)},
                    "tasks": {t: {"n": 30, "metrics": {"acc": 0.50 + delta}} for t in tasks}},
        comparison=comparison, card={"findings": [], "licence": licence},
        licence={"schema": "assay.licence/1", "licence": licence, "violations": []})
    return vet_document(make_result(stages, tmp=folder.parent, name=folder.name, base=base.name))
