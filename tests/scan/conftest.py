"""Fixtures for the scanner tests: the hostile corpus and real ``torch.save`` outputs, each built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factory.hostile import Sample, build_hostile


@pytest.fixture(scope="session")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    """Every hostile sample (see tests/factory/hostile.py)."""
    return build_hostile(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="session")
def torch_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """What honest training code writes with torch.save: state dicts, AdamW state, scheduler, RNG, TrainingArguments."""
    import random

    import numpy as np
    import torch
    from transformers import TrainingArguments

    from tests.conftest import single_thread_torch
    from tests.factory.models import build_model

    single_thread_torch()
    out = tmp_path_factory.mktemp("torch-save")
    model = build_model(seed=1)
    paths: dict[str, Path] = {}

    def save(name: str, obj: object, **kw: object) -> None:
        paths[name] = out / name
        torch.save(obj, paths[name], **kw)

    save("state_dict.bin", model.state_dict())
    save("state_dict_bf16.bin", {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()})
    save("state_dict_legacy.bin", model.state_dict(), _use_new_zipfile_serialization=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.tensor([[1, 2, 3, 4]])
    model(ids, labels=ids).loss.backward()
    opt.step()
    save("optimizer.pt", opt.state_dict())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    save("scheduler.pt", sched.state_dict())
    save("rng_state.pth", {"python": random.getstate(), "numpy": np.random.get_state(),
                           "cpu": torch.random.get_rng_state()})
    save("training_args.bin", TrainingArguments(output_dir=str(out / "run"), report_to=[]))
    save("mixed.pt", {"step": 10, "dtype": torch.float16, "shape": torch.Size([2, 3]), "device": torch.device("cpu"),
                      "names": {"a", "b"}, "blob": b"\x00\x01", "scores": np.arange(4, dtype=np.float32)})
    return paths
