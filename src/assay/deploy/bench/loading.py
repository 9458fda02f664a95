"""Getting a checkpoint into this process for a local bench: the libraries imported before any clock starts,
the model's context checked before any process starts, and the load itself, which only follows a safe scan.

    >>> check_context(ref, needed=128 + 64)       # refuses early when config.json's context is too short
    >>> import_libraries(ref)                      # torch, transformers, the architecture's modelling module
    >>> loaded, scan_s, load_s, note = load(ref, backend="hf", dtype="float32", threads=None)
    >>> loaded.model, loaded.tokenizer
"""

from __future__ import annotations

import importlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from assay.errors import BackendError, DeployError
from assay.model.ref import ModelRef


def load(ref: ModelRef, *, backend: str, dtype: str,
         threads: int | None) -> tuple[Any, float | None, float, str | None]:
    """``(loaded, scan seconds, load seconds, note)``: a backend with ``.model`` and ``.tokenizer``.

    The model is scanned first (:func:`assay.scan.scan_model`) and loaded by the hf backend only if it scanned
    safe; the scan is timed apart from the load. If this installation has no scanner, only checkpoints whose
    files cannot run code (safetensors or GGUF weights, no remote code) are loaded.
    """
    if backend != "hf":
        raise DeployError(f"run_bench loads the model with the hf backend (got {backend!r}); measure a running "
                          "server with run_remote_bench (`assay bench NAME --backend openai --base-url URL`)")
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise BackendError("bench needs torch and transformers: pip install 'assay[eval]'") from exc
    try:
        from assay.evaluate.backends.hf import HFBackend, load_after_scan
        from assay.scan import scan_model
    except ImportError as exc:
        if not (exc.name or "").startswith("assay"):
            raise
        t0 = time.perf_counter()
        inert: Any = _load_inert(ref, dtype=dtype)
        return (inert, None, time.perf_counter() - t0,
                "no scanner in this installation: only safetensors/GGUF checkpoints without remote code are loaded")
    if not ref.single_file and (ref.root / "adapter_config.json").is_file():
        t0 = time.perf_counter()
        loaded = load_after_scan(ref, dtype=dtype, threads=threads)
        return loaded, None, time.perf_counter() - t0, "adapter: load time includes scanning adapter and base"
    t0 = time.perf_counter()
    report = scan_model(ref)
    t1 = time.perf_counter()
    loaded = HFBackend.from_ref(ref, scanned=report, dtype=dtype, threads=threads)
    return loaded, t1 - t0, time.perf_counter() - t1, None


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any


def _load_inert(ref: ModelRef, *, dtype: str) -> _Loaded:
    """Load a checkpoint whose files cannot run code (safetensors or GGUF weights, no remote code).

    Used only when the hf backend (which scans first) is not installed; anything pickle-based is refused.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assay.model.formats import WEIGHT_FORMATS, Format, detect

    weights = {rel: detect(ref.path(rel)) for rel in ref.files}
    weights = {rel: fmt for rel, fmt in weights.items() if fmt in WEIGHT_FORMATS}
    unsafe = sorted(rel.as_posix() for rel, fmt in weights.items() if fmt not in (Format.SAFETENSORS, Format.GGUF))
    if unsafe or not weights:
        raise DeployError(f"{ref.spec}: without the hf backend (which scans first), bench loads only safetensors or "
                          f"GGUF weights; found {', '.join(unsafe) or 'no weights'}")
    cfg_path = ref.root / "config.json"
    if not ref.single_file and cfg_path.is_file() and "auto_map" in json.loads(cfg_path.read_text(encoding="utf-8")):
        raise DeployError(f"{ref.spec}: the config asks for remote code (auto_map), which assay never runs")
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise DeployError(f"unknown dtype {dtype!r} (float32, bfloat16 or float16)")
    gguf = [rel for rel, fmt in weights.items() if fmt is Format.GGUF]
    kwargs: dict[str, Any] = {"trust_remote_code": False}
    if gguf:
        kwargs["gguf_file"] = gguf[0].as_posix()
    else:
        kwargs["use_safetensors"] = True
    try:
        tok = AutoTokenizer.from_pretrained(str(ref.root), **kwargs)
        model = AutoModelForCausalLM.from_pretrained(str(ref.root), dtype=torch_dtype, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DeployError(f"{ref.spec}: transformers could not load it: {first}") from exc
    return _Loaded(model, tok)


def import_libraries(ref: ModelRef) -> None:
    """Import torch, transformers and the architecture's modelling module before anything is timed.

    The first model loaded in a process would otherwise pay for these imports (seconds, and ~150 MiB of RSS)
    and look slower and larger than a base measured after it. The modules are transformers' own library code,
    named from ``config.json``'s ``model_type``; nothing from the checkpoint is imported.
    """
    import torch  # noqa: F401
    import transformers

    _ = transformers.AutoModelForCausalLM, transformers.AutoTokenizer
    cfg = ref.root / "config.json"
    try:
        model_type = json.loads(cfg.read_text(encoding="utf-8")).get("model_type") if cfg.is_file() else "llama"
    except (OSError, ValueError, AttributeError):
        model_type = None
    if isinstance(model_type, str) and re.fullmatch(r"[a-z0-9_]+", model_type):
        try:
            importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
        except ImportError:
            pass


def check_context(ref: ModelRef, needed: int) -> None:
    """Refuse early (before any process starts) when config.json's context is too short for the request."""
    cfg_path = ref.root / "config.json"
    if ref.single_file or not cfg_path.is_file():
        return
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # the loader reports an unreadable config
    if isinstance(cfg, dict) and isinstance(cfg.get("text_config"), dict):
        cfg = {**cfg["text_config"], **cfg}
    ctx = cfg.get("max_position_embeddings") if isinstance(cfg, dict) else None
    if isinstance(ctx, int) and not isinstance(ctx, bool) and needed > ctx:
        raise DeployError(f"{ref.spec}: prompt + output tokens ({needed}) exceed the model's context of {ctx}")

