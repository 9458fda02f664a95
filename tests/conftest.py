"""Session-wide test setup: offline, single-threaded torch, and the tiny model zoo.

Fixtures:
    zoo             -- `tests.factory.models.Zoo`: the tiny model in every format, built once per session.
    tiny_model_dir  -- the zoo's single-file safetensors Hugging Face folder.

    def test_inspect(zoo, capsys):
        rc = main(["inspect", "--json", str(zoo.safetensors_dir)])

torch is imported only by the fixtures, so tests that need no model never pay for it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.factory.models import Zoo

# Set before torch, transformers or huggingface_hub are first imported: they read these at import time.
# Tests never touch the network, and 2 cores are shared by many test processes.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"


def single_thread_torch() -> None:
    """Pin torch to one thread (call after importing torch in a fixture or test)."""
    import torch

    torch.set_num_threads(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-goldens", action="store_true", default=False,
                     help="Rewrite the golden report files under tests/report/goldens/ from the current renderers "
                          "(then review the diff before committing it).")


def pytest_configure(config: pytest.Config) -> None:
    # A plugin may have imported torch before the environment above was set; pin it without importing it.
    if "torch" in sys.modules:
        single_thread_torch()


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    """The tiny Llama saved in every format (see `tests.factory.models.build_zoo`); built once per session."""
    single_thread_torch()
    from tests.factory.models import build_zoo

    return build_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="session")
def tiny_model_dir(zoo: Zoo) -> Path:
    """A Hugging Face folder: config.json, model.safetensors, tokenizer (with chat template), README card."""
    return zoo.safetensors_dir


@pytest.fixture(autouse=True)
def _documents_match_their_schemas(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every JSON document a command prints in any test must match its published schema (src/assay/schemas/).

    Commands print documents through ``emit_json``, which turns them into plain data with ``to_jsonable``;
    wrapping that records each document, and the test fails at teardown naming the field that does not match.
    """
    import assay.cli.common as common
    from assay.schemas import SchemaError, validate

    plain = common.to_jsonable
    problems: list[str] = []

    def checked(obj: Any) -> Any:
        out = plain(obj)
        if isinstance(out, dict) and "schema" in out:
            try:
                validate(out)
            except SchemaError as exc:
                problems.append(exc.message)
        return out

    monkeypatch.setattr(common, "to_jsonable", checked)
    yield
    assert not problems, "\n".join(problems)


@dataclass(frozen=True)
class Run:
    """One CLI run."""

    rc: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Call `assay` in process: `cli("inspect", path, "--json")` -> Run(rc, stdout, stderr)."""

    from assay.cli.main import main

    def run(*args: object) -> Run:
        capsys.readouterr()
        rc = main([str(a) for a in args])
        cap = capsys.readouterr()
        return Run(rc, cap.out, cap.err)

    return run
