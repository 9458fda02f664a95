"""The ``hf`` backend: a transformers causal LM in this process, on CPU or CUDA.

Scores exactly what lm-evaluation-harness's ``hf`` model scores (same tokenisation of context and continuation,
same truncation), but computes it with far fewer tokens:

- every item's context is run **once**, and all its answer choices are packed into the same row behind it, each
  choice seeing only the context and itself (a block attention mask and explicit position ids), so a 4-choice
  item costs one forward pass instead of four (requests are grouped by their context tokens, so choices with
  contexts of their own, as in Winogrande, get one row per context);
- a token prefix shared by all contexts (the few-shot examples of a ``first_n`` task) is run once and its
  key/value cache is reused by every batch;
- rows are sorted by length and batched under a token budget; log-probabilities are taken only at the positions
  that are scored (the output projection runs on those positions only), as the target's logit minus the
  log-sum-exp of its row, never as a full-vocabulary log-softmax;
- generation is batched greedy decoding: prompts are sorted by length, the token prefix they share (the few-shot
  examples) is run once and its key/value cache extended by every row, each row stops as soon as one of its stop
  strings appears (or at EOS, or at its token budget) and leaves the batch;
- a long document (rolling log-likelihood) is projected onto the vocabulary in slices of positions, so the
  full ``[tokens x vocabulary]`` log-probability matrix is never materialised.

The results equal a plain full forward per request up to floating-point noise (tests hold it to 1e-4 in fp32), and
do not depend on the batch size. The key/value cache is passed under the name the installed transformers uses
(``cache`` since 5.25, ``past_key_values`` before), so no deprecation warning reaches the user.

    ref = resolve("./my-model")
    backend = load_after_scan(ref, dtype="float32")      # refuses a model that did not scan safe
    [r] = backend.loglikelihood([LoglikelihoodRequest("The capital of France is", " Paris")])

For KL drift (``assay.evaluate.kl``), :meth:`HFBackend.token_logprobs_full` returns full next-token
distributions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay.errors import EvalError
from assay.evaluate.backends.base import (Backend, BackendInfo, GenerationRequest, LoglikelihoodRequest,
                                          LoglikelihoodResult, RollingResult)
from assay.model.ref import ModelRef
from assay.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    import torch

DTYPES = ("float32", "bfloat16", "float16")
#: lm-evaluation-harness's fallback context length when neither config nor tokenizer gives one.
DEFAULT_MAX_LENGTH = 2048
_TOKENIZER_INFINITY = 1000000000000000019884624838656
#: A shared token prefix shorter than this is not worth a separate forward pass.
_MIN_SHARED_PREFIX = 8
#: Token budget of one packed batch (rows x longest row), and the most rows in one batch.
DEFAULT_TOKEN_BUDGET = 2048
DEFAULT_BATCH_ROWS = 16
#: Generation: the most key/value-cache tokens (rows x (prompt + budget)) held by one decoding batch.
GENERATION_CACHE_TOKENS = 12288
#: Positions projected onto the vocabulary at once when scoring a long document.
ROLLING_SLICE = 512


class UnsafeModelError(EvalError):
    """The model did not scan safe, so it is not loaded for evaluation."""

    exit_code = 1


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """Torch threads for one evaluation process, from the cores this process may actually use.

    Measured on the 2-core CPU this was built on, shared with other work (load average 4-6): SmolLM2-135M on 40
    four-choice items took 11.9 s and 14.1 s of wall time with one thread, 25.4 s and 52.6 s with two (threads
    contend with the other processes and wait for each other). So with 2 usable cores, two threads are used
    only when the machine is idle (1-minute load average below 0.5), else one; with more cores, the cores not
    already busy (cores minus load average), at least 1 and at most 8. ``--threads`` overrides.
    """
    n = usable_cores()
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    if n <= 2:
        return 2 if n == 2 and busy < 0.5 else 1  # both cores idle: use them; any other work: one thread
    return max(1, min(n, 8, round(n - busy)))


def cache_keyword(model: Any) -> str:
    """The keyword a model's ``forward`` takes its key/value cache under: ``cache`` (transformers >= 5.25, where
    ``past_key_values`` is deprecated and warns) or ``past_key_values`` (before)."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def output_cache(output: Any) -> Any:
    """The key/value cache a forward returned, under either name (see :func:`cache_keyword`)."""
    cache = getattr(output, "cache", None) if "cache" in output else None
    return cache if cache is not None else output["past_key_values"]


def model_identity(ref: ModelRef) -> str:
    """A content identity of everything in the model that changes an output (part of every result-cache key).

    A digest over :func:`assay.evaluate.cache.model_inputs`: the weights root of :mod:`assay.provenance.manifest`
    (or, when it cannot be computed, a blake3 digest over the names and bytes of the weight files), the digests
    of ``config.json``, ``generation_config.json``, every tokenizer file, the chat template and the adapter
    config, and of a GGUF file's whole content (its metadata holds the config and tokenizer). A PEFT adapter
    folder adds its base's identity.
    """
    from blake3 import blake3

    from assay.evaluate.cache import model_inputs

    root: str | None = None
    try:
        from assay.provenance.manifest import weights_root

        root = weights_root(ref)
    except Exception:  # noqa: BLE001 - fall back to hashing the files ourselves
        root = None
    weight_suffixes = (".safetensors", ".gguf", ".bin", ".pt", ".pth")
    weight_files = [f for f in ref.files if f.name.endswith(weight_suffixes)]
    if not root:
        h = blake3()
        for rel in weight_files or list(ref.files):
            h.update(rel.as_posix().encode() + b"\0")
            with open(ref.path(rel), "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        root = "blake3:" + h.hexdigest()
    inputs = model_inputs(ref.root, root, weight_files=weight_files)
    adapter_cfg = ref.root / "adapter_config.json"
    if not ref.single_file and adapter_cfg.is_file():
        inputs["adapter_base"] = model_identity(_adapter_base_ref(ref))
    return "blake3:" + blake3(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def load_after_scan(ref: ModelRef, *, dtype: str = "float32", device: str = "cpu", threads: int | None = None,
                    batch_size: int | None = None, max_length: int | None = None,
                    progress: Progress = NULL_PROGRESS) -> HFBackend:
    """Scan the model (and a PEFT adapter's base) with :func:`assay.scan.scan_model`, then load it.

    Raises :class:`UnsafeModelError` (exit 1) for an unsafe verdict and :class:`EvalError` (exit 2) when the scan
    could not verify the model: nothing is loaded unless it scanned safe.
    """
    try:
        from assay.scan import scan_model
    except ImportError as exc:
        raise EvalError("the scanner (assay.scan) is not available, so the model cannot be vetted before loading"
                        ) from exc
    refs = [ref]
    if not ref.single_file and (ref.root / "adapter_config.json").is_file():
        refs.append(_adapter_base_ref(ref))
    reports = []
    for r in refs:
        progress.note(f"scanning {r.spec} before loading it")
        report = scan_model(r)
        _require_safe(r, report)
        reports.append(report)
    return HFBackend.from_ref(ref, scanned=reports[0], dtype=dtype, device=device, threads=threads,
                              batch_size=batch_size, max_length=max_length)


def _require_safe(ref: ModelRef, report: Any) -> None:
    if report is None:
        raise EvalError(f"{ref.spec} has not been scanned, so it is not loaded",
                        hint="use load_after_scan(), or pass the ScanReport as scanned=")
    verdict = str(getattr(report, "verdict", "unverified"))
    verdict = getattr(getattr(report, "verdict", None), "value", verdict)
    if verdict == "safe":
        return
    if verdict == "unsafe":
        raise UnsafeModelError(f"{ref.spec} scanned unsafe, so it is not loaded",
                               hint=f"see `assay scan {ref.spec}`")
    raise EvalError(f"{ref.spec} could not be verified safe by the scanner (verdict: {verdict}), so it is not "
                    f"loaded", hint=f"see `assay scan {ref.spec}`")


def _adapter_base_ref(ref: ModelRef) -> ModelRef:
    from assay.model.ref import resolve

    try:
        cfg = json.loads((ref.root / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvalError(f"{ref.spec}: adapter_config.json is not readable JSON ({exc})") from exc
    base = cfg.get("base_model_name_or_path") if isinstance(cfg, dict) else None
    if not isinstance(base, str) or not base:
        raise EvalError(f"{ref.spec}: adapter_config.json names no base_model_name_or_path, so the adapter cannot "
                        f"be merged into a base")
    local = (ref.root / base)
    return resolve(str(local) if not Path(base).is_absolute() and local.exists() else base)


@dataclass
class _Row:
    """One packed row: an item's context suffix followed by each choice's input tokens."""

    tokens: list[int]
    positions: list[int]
    # per request scored in this row: (request index, positions whose logits predict it, target tokens)
    scored: list[tuple[int, list[int], list[int]]]
    # segment boundaries for the block mask: (start, end) of each choice block; the suffix is [0, suffix_len)
    suffix_len: int
    blocks: list[tuple[int, int]]


class HFBackend(Backend):
    """A transformers causal LM in this process (see the module docstring for what it computes and how)."""

    def __init__(self, model: Any, tokenizer: Any, *, model_id: str, device: str = "cpu", dtype: str = "float32",
                 threads: int | None = None, batch_size: int | None = None, max_length: int | None = None,
                 token_budget: int = DEFAULT_TOKEN_BUDGET, pack: bool = True,
                 loader: Callable[[], Any] | None = None, config: Any = None) -> None:
        import torch

        self._model = model
        self._loader = loader if model is None else None
        self.config = config if config is not None else model.config
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype
        self.threads = threads if threads is not None else (default_threads() if device == "cpu" else None)
        if self.threads:
            torch.set_num_threads(self.threads)
        self.batch_rows = batch_size or DEFAULT_BATCH_ROWS
        self.token_budget = max(token_budget, 64)
        self.pack = pack
        self._max_length = max_length
        self._model_id = model_id
        self._tokenizer_digest: str | None = None
        if model is not None:
            model.eval()
        self._head_plan: tuple[Any, Any, str] | None = None

    @property
    def model(self) -> Any:
        """The torch model; a backend opened with ``lazy=True`` loads it here, on first use."""
        if self._model is None and self._loader is not None:
            model = self._loader()
            model.eval()
            self._model, self._loader = model, None
        return self._model

    @model.setter
    def model(self, value: Any) -> None:
        self._model = value
        self._loader = None

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory (a lazy backend whose results all came from the cache never loads)."""
        return self._model is not None

    # ----------------------------------------------------------------------------------------- construction
    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, *, model_id: str, dtype: str = "float32", device: str = "cpu",
                   threads: int | None = None, batch_size: int | None = None, max_length: int | None = None,
                   pack: bool = True) -> HFBackend:
        """Wrap a model already in memory (built in code, so there is nothing to scan)."""
        return cls(model.to(device), tokenizer, model_id=model_id, device=device, dtype=dtype, threads=threads,
                   batch_size=batch_size, max_length=max_length, pack=pack)

    @classmethod
    def from_ref(cls, ref: ModelRef, *, scanned: Any = None, dtype: str = "float32", device: str = "cpu",
                 threads: int | None = None, batch_size: int | None = None,
                 max_length: int | None = None, lazy: bool = False) -> HFBackend:
        """Load a model the caller has already scanned (``scanned``: its :class:`ScanReport`, verdict ``safe``).

        Reads a Hugging Face folder (safetensors, or torch ``.bin`` through transformers' ``weights_only``
        loader), a single GGUF file, a PEFT adapter folder (its base resolved with :func:`assay.model.ref.resolve`
        and merged in memory), or a single ``.safetensors`` file with a ``config.json`` beside it.
        ``trust_remote_code`` is always off. Without a safe ``scanned`` report nothing is loaded (EvalError);
        use :func:`load_after_scan` to scan and load in one call.

        ``lazy=True`` (a plain folder on CPU): the config and tokenizer are read now and the weights only when
        something is computed, so a model whose results all come from the result cache is never loaded.
        """
        _require_safe(ref, scanned)
        if dtype not in DTYPES:
            raise EvalError(f"unknown dtype {dtype!r} (choose one of {', '.join(DTYPES)})")
        import torch

        if threads:
            torch.set_num_threads(threads)
        root = ref.root
        if (lazy and device == "cpu" and not ref.single_file and (root / "config.json").is_file()
                and not (root / "adapter_config.json").is_file()):
            config, tok = _load_config_and_tokenizer(ref)

            def load() -> Any:
                try:
                    return _load_folder_model(root, dtype)
                except Exception as exc:  # noqa: BLE001 - a loader failure of any kind is one line for the user
                    first = str(exc).splitlines()[0] if str(exc) else ""
                    raise EvalError(f"cannot load model {ref.spec}: {type(exc).__name__}: {first}") from exc

            return cls(None, tok, model_id=model_identity(ref), device=device, dtype=dtype, threads=threads,
                       batch_size=batch_size, max_length=max_length, loader=load, config=config)
        model, tok = _load_model(ref, dtype=dtype)
        try:
            model = model.to(device)
        except (RuntimeError, AssertionError) as exc:
            raise EvalError(f"cannot move {ref.spec} to device {device!r}: {str(exc).splitlines()[0]}") from exc
        return cls(model, tok, model_id=model_identity(ref), device=device, dtype=dtype, threads=threads,
                   batch_size=batch_size, max_length=max_length)

    # ----------------------------------------------------------------------------------------- identity
    @property
    def info(self) -> BackendInfo:
        if getattr(self, "_tokenizer_digest", None) is None:
            from assay.evaluate.kl import tokenizer_fingerprint

            try:
                self._tokenizer_digest = tokenizer_fingerprint(self.tokenizer)
            except Exception:  # noqa: BLE001 - a tokenizer without a readable vocabulary: identity unknown
                self._tokenizer_digest = ""
        return BackendInfo(backend="hf", model_id=self._model_id,
                           settings={"dtype": self.dtype, "device": self.device.split(":")[0],
                                     "max_length": self.max_length}, tokenizer=self._tokenizer_digest or "")

    @property
    def max_length(self) -> int:
        """Context length, resolved as lm-evaluation-harness resolves it (config, then tokenizer, then 2048)."""
        if self._max_length:
            return self._max_length
        cfg = getattr(self.config, "text_config", None) or self.config
        for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
            value = getattr(cfg, attr, None)
            if value is not None:
                return int(value)
        mml = getattr(self.tokenizer, "model_max_length", None)
        if mml is not None and mml != _TOKENIZER_INFINITY:
            return int(mml)
        return DEFAULT_MAX_LENGTH

    @property
    def prefix_token_id(self) -> int:
        """The token that conditions an empty context (BOS, else EOS), as in lm-evaluation-harness."""
        tok = self.tokenizer
        if tok.bos_token_id is not None:
            return int(tok.bos_token_id)
        return int(tok.eos_token_id)

    # ----------------------------------------------------------------------------------------- tokenisation
    def tok_encode(self, text: str) -> list[int]:
        """Token ids with the tokenizer's own special-token default (no BOS added if the text already has it)."""
        tok = self.tokenizer
        kwargs: dict[str, Any] = {}
        bos = tok.decode(self.prefix_token_id)
        if bos and text.startswith(bos):
            kwargs["add_special_tokens"] = False
        # verbose=False: a document longer than the tokenizer's model_max_length is expected (it is windowed)
        return list(tok.encode(text, verbose=False, **kwargs))

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation tokens exactly as lm-evaluation-harness splits them.

        Trailing whitespace of the context moves into the continuation; the whole string is tokenised and split
        at the length of the tokenised context. An empty context becomes the prefix token (BOS or EOS).
        """
        if context == "":
            cont = list(self.tokenizer.encode(continuation, add_special_tokens=False, verbose=False))
            if cont and cont[0] == self.prefix_token_id:
                return cont[:1], cont[1:]
            return [self.prefix_token_id], cont
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces > 0:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.tok_encode(context + continuation)
        ctx = self.tok_encode(context)
        return ctx, whole[len(ctx):]

    # ----------------------------------------------------------------------------------------- scoring
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *,
                      progress: Progress = NULL_PROGRESS) -> list[LoglikelihoodResult]:
        encoded = [self.encode_pair(r.context, r.continuation) for r in requests]
        return self.loglikelihood_tokens(encoded, progress=progress)

    def loglikelihood_tokens(self, encoded: Sequence[tuple[list[int], list[int]]], *,
                             progress: Progress = NULL_PROGRESS) -> list[LoglikelihoodResult]:
        """Score (context tokens, continuation tokens) pairs; results in input order."""
        import torch

        results: list[LoglikelihoodResult | None] = [None] * len(encoded)
        groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
        plain: list[int] = []
        limit = self.max_length
        for i, (ctx, cont) in enumerate(encoded):
            if not cont:
                results[i] = LoglikelihoodResult(logprob=0.0, is_greedy=True, n_tokens=0)
            elif not self.pack or len(ctx) + len(cont) > limit + 1 or not ctx:
                plain.append(i)
            else:
                groups.setdefault(tuple(ctx), []).append((i, cont))
        total = len(plain) + sum(len(v) for v in groups.values())
        task = "scoring"
        progress.start(task, total=total)
        with torch.inference_mode():
            for i in plain:
                ctx, cont = encoded[i]
                results[i] = self._score_plain(ctx, cont)
                progress.advance(task)
            if groups:
                self._score_packed(groups, results, progress, task)
        progress.finish(task)
        if any(r is None for r in results):  # pragma: no cover - guards an internal invariant
            raise EvalError("internal error: a request was not scored")
        return [r for r in results if r is not None]

    def _score_plain(self, ctx: list[int], cont: list[int]) -> LoglikelihoodResult:
        """One request, one forward: lm-evaluation-harness's ``[-(max_length+1):][:-1]`` input."""
        import torch

        whole = (ctx + cont)[-(self.max_length + 1):]
        inp = torch.tensor([whole[:-1]], device=self.device)
        n = len(cont)
        positions = torch.arange(inp.shape[1] - n, inp.shape[1], device=self.device)
        ll, greedy = self._target_scores({"input_ids": inp, "use_cache": False}, torch.zeros_like(positions),
                                         positions, torch.tensor(cont, device=self.device))
        return LoglikelihoodResult(logprob=float(ll.sum().item()), is_greedy=bool(greedy.all().item()), n_tokens=n)

    def _shared_prefix(self, contexts: list[tuple[int, ...]]) -> int:
        if len(contexts) < 2:
            return 0
        first = contexts[0]
        n = min(len(c) for c in contexts) - 1  # every row keeps at least one context token of its own
        p = 0
        while p < n and all(c[p] == first[p] for c in contexts):
            p += 1
        return p if p >= _MIN_SHARED_PREFIX else 0

    def _score_packed(self, groups: dict[tuple[int, ...], list[tuple[int, list[int]]]],
                      results: list[LoglikelihoodResult | None], progress: Progress, task: str) -> None:
        contexts = list(groups)
        p = self._shared_prefix(contexts)
        prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        if p:
            prefix_kv = self._prefix_cache(list(contexts[0][:p]))
        rows = [self._make_row(ctx, groups[ctx], p) for ctx in contexts]
        rows.sort(key=lambda r: len(r.tokens))
        batch: list[_Row] = []
        for row in rows:
            longest = max([len(row.tokens)] + [len(r.tokens) for r in batch])
            if batch and (len(batch) + 1 > self.batch_rows or (len(batch) + 1) * longest > self.token_budget):
                self._run_rows(batch, p, prefix_kv, results)
                progress.advance(task, sum(len(r.scored) for r in batch))
                batch = []
            batch.append(row)
        if batch:
            self._run_rows(batch, p, prefix_kv, results)
            progress.advance(task, sum(len(r.scored) for r in batch))

    @staticmethod
    def _make_row(ctx: tuple[int, ...], conts: list[tuple[int, list[int]]], p: int) -> _Row:
        suffix = list(ctx[p:])
        tokens = list(suffix)
        positions = list(range(p, p + len(suffix)))
        last_ctx = len(suffix) - 1
        scored: list[tuple[int, list[int], list[int]]] = []
        blocks: list[tuple[int, int]] = []
        base_pos = p + len(suffix)
        for req_idx, cont in conts:
            start = len(tokens)
            inputs = cont[:-1]
            tokens.extend(inputs)
            positions.extend(range(base_pos, base_pos + len(inputs)))
            blocks.append((start, len(tokens)))
            scored.append((req_idx, [last_ctx] + list(range(start, start + len(inputs))), list(cont)))
        return _Row(tokens=tokens, positions=positions, scored=scored, suffix_len=len(suffix), blocks=blocks)

    def _run_rows(self, batch: list[_Row], p: int, prefix_kv: list[tuple[Any, Any]] | None,
                  results: list[LoglikelihoodResult | None]) -> None:
        import torch

        n = len(batch)
        width = max(len(r.tokens) for r in batch)
        dtype = next(self.model.parameters()).dtype
        ids = torch.full((n, width), self.prefix_token_id, dtype=torch.long)
        pos = torch.zeros((n, width), dtype=torch.long)
        allowed = torch.zeros((n, width, width), dtype=torch.bool)
        causal = torch.ones((width, width), dtype=torch.bool).tril()
        for b, row in enumerate(batch):
            length = len(row.tokens)
            ids[b, :length] = torch.tensor(row.tokens)
            pos[b, :length] = torch.tensor(row.positions)
            pos[b, length:] = row.positions[-1]
            s = row.suffix_len
            allowed[b, :s, :s] = causal[:s, :s]
            for start, end in row.blocks:
                allowed[b, start:end, :s] = True
                allowed[b, start:end, start:end] = causal[: end - start, : end - start]
            idx = torch.arange(length, width)
            allowed[b, idx, idx] = True  # padding attends to itself only, so it stays finite
        if p:
            allowed = torch.cat([torch.ones((n, width, p), dtype=torch.bool), allowed], dim=2)
        mask = torch.zeros(allowed.shape, dtype=dtype)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)
        mask = mask[:, None].to(self.device)
        kwargs: dict[str, Any] = {"input_ids": ids.to(self.device), "position_ids": pos.to(self.device),
                                  "attention_mask": mask}
        if prefix_kv is not None:
            kwargs[self._cache_kw] = self._expanded_cache(prefix_kv, n)
            kwargs["use_cache"] = True
        else:
            kwargs["use_cache"] = False
        # Gather the scored positions first, then project only those onto the vocabulary.
        sel_rows: list[int] = []
        sel_pos: list[int] = []
        spans: list[tuple[int, int, int, list[int]]] = []
        for b, row in enumerate(batch):
            for req_idx, positions, target in row.scored:
                spans.append((req_idx, len(sel_pos), len(positions), target))
                sel_rows.extend([b] * len(positions))
                sel_pos.extend(positions)
        rows_t = torch.tensor(sel_rows, device=self.device)
        pos_t = torch.tensor(sel_pos, device=self.device)
        targets = torch.tensor([t for *_, target in spans for t in target], device=self.device)
        token_lp, greedy = self._target_scores(kwargs, rows_t, pos_t, targets)
        for req_idx, start, count, _target in spans:
            ll = float(token_lp[start:start + count].sum().item())
            is_greedy = bool(greedy[start:start + count].all().item())
            results[req_idx] = LoglikelihoodResult(logprob=ll, is_greedy=is_greedy, n_tokens=count)

    # ----------------------------------------------------------------------------------------- forward helpers
    @property
    def _cache_kw(self) -> str:
        return self._plan()[2]

    def _plan(self) -> tuple[Any, Any, str]:
        """(body, head, cache keyword): the body returns hidden states when the output head is a plain projection
        (no logit soft-capping or scaling), so the head can run on the scored positions only; else body is None."""
        if self._head_plan is None:
            head = self.model.get_output_embeddings()
            cfg = self.model.config
            plain_head = head is not None and not any(
                getattr(cfg, a, None) not in (None, 1, 1.0) for a in ("final_logit_softcapping", "logit_scale",
                                                                      "logits_scaling"))
            base = getattr(self.model, "base_model", None)
            body = base if plain_head and base is not None and base is not self.model else None
            self._head_plan = (body, head, cache_keyword(self.model))
        return self._head_plan

    def _hidden(self, kwargs: dict[str, Any]) -> tuple[Any, bool]:
        """Run the model; returns (hidden states, True) when the head can be applied separately, else (logits,
        False)."""
        body, _head, _kw = self._plan()
        if body is not None:
            return body(**kwargs).last_hidden_state, True
        return self.model(**kwargs).logits, False

    def _selected_logits(self, kwargs: dict[str, Any], rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits at (row, position) pairs; the vocabulary projection runs on those positions only when safe."""
        out, is_hidden = self._hidden(kwargs)
        picked: torch.Tensor = out[rows, positions]
        return self._plan()[1](picked) if is_hidden else picked

    def _target_scores(self, kwargs: dict[str, Any], rows: torch.Tensor, positions: torch.Tensor,
                       targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability of ``targets`` at (row, position) pairs and whether each is the argmax there.

        The log-probability is the target's logit minus the log-sum-exp of its row (no log-softmax over the whole
        vocabulary is materialised); positions are projected onto the vocabulary in slices of
        :data:`ROLLING_SLICE`, so a long document never holds a ``[tokens x vocabulary]`` matrix.
        """
        import torch

        out, is_hidden = self._hidden(kwargs)
        head = self._plan()[1]
        lps, greedy = [], []
        for start in range(0, len(positions), ROLLING_SLICE):
            sl = slice(start, start + ROLLING_SLICE)
            picked = out[rows[sl], positions[sl]]
            logits = (head(picked) if is_hidden else picked).float()
            tgt = targets[sl]
            lps.append(logits.gather(1, tgt[:, None])[:, 0] - torch.logsumexp(logits, dim=-1))
            greedy.append(logits.argmax(-1) == tgt)
        return torch.cat(lps), torch.cat(greedy)

    def _prefix_cache(self, tokens: list[int]) -> list[tuple[Any, Any]]:
        """Keys and values of every layer after running ``tokens`` (batch 1), to be shared by many rows."""
        import torch

        runner = self._plan()[0] or self.model  # the body alone: the prefix needs no logits
        out = runner(input_ids=torch.tensor([tokens], device=self.device), use_cache=True)
        return [(k, v) for k, v, *_ in output_cache(out)]

    def _expanded_cache(self, prefix_kv: list[tuple[Any, Any]], n: int) -> Any:
        """A fresh key/value cache holding the shared prefix once per row (``n`` rows)."""
        from transformers import DynamicCache

        cache = DynamicCache()
        for layer, (k, v) in enumerate(prefix_kv):
            cache.update(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1), layer)
        return cache

    # ----------------------------------------------------------------------------------------- rolling
    def rolling_windows(self, text: str) -> list[tuple[list[int], list[int]]]:
        """Disjoint scoring windows over a document, as lm-evaluation-harness builds them (context length 1)."""
        tokens = self.tok_encode(text)
        if not tokens:
            return []
        max_len = self.max_length
        windows: list[tuple[list[int], list[int]]] = []
        first = min(max_len, len(tokens))
        windows.append(([self.prefix_token_id] + tokens[: first - 1], tokens[:first]))
        done = first
        while done < len(tokens):
            n_pred = min(len(tokens) - done, max_len)
            end = done + n_pred
            windows.append((tokens[max(end - max_len - 1, 0): end - 1], tokens[end - n_pred: end]))
            done = end
        # make each window disjoint: its input keeps only the one token before its predictions
        return [(inp[: len(inp) - (len(pred) - 1)], pred) for inp, pred in windows]

    def loglikelihood_rolling(self, texts: Sequence[str], *,
                              progress: Progress = NULL_PROGRESS) -> list[RollingResult]:
        import torch

        out: list[RollingResult] = []
        progress.start("perplexity", total=len(texts))
        with torch.inference_mode():
            for text in texts:
                total, count = 0.0, 0
                for ctx, pred in self.rolling_windows(text):
                    r = self._score_plain(ctx, pred)
                    total += r.logprob
                    count += r.n_tokens
                out.append(RollingResult(logprob=total, n_tokens=count))
                progress.advance("perplexity")
        progress.finish("perplexity")
        return out

    # ----------------------------------------------------------------------------------------- KL support
    def token_logprobs_full(self, text: str) -> tuple[list[int], torch.Tensor]:
        """Full next-token distributions over a text, for KL drift.

        Returns ``(input_ids, logprobs)``: ``input_ids`` is ``[prefix token] + tokens(text)`` (cut to the context
        length) and ``logprobs[t]`` is the log-softmax (float32, shape ``[len(input_ids) - 1, vocab]``) of the
        distribution that predicts ``input_ids[t + 1]``.
        """
        import torch

        ids = ([self.prefix_token_id] + self.tok_encode(text))[: self.max_length]
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids], device=self.device)).logits[0, :-1].float()
        return ids, torch.log_softmax(logits, dim=-1).cpu()

    def next_token_logprobs(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """:meth:`token_logprobs_full` for several texts, distributions only."""
        return [self.token_logprobs_full(t)[1] for t in texts]

    # ----------------------------------------------------------------------------------------- generation
    def apply_chat_template(self, user_message: str) -> str:
        tok = self.tokenizer
        if not getattr(tok, "chat_template", None):
            return user_message
        # The template was vetted by the scanner before the model was loaded (templates are rendered only here).
        return str(tok.apply_chat_template([{"role": "user", "content": user_message}], tokenize=False,
                                           add_generation_prompt=True))

    def generate(self, requests: Sequence[GenerationRequest], *,
                 progress: Progress = NULL_PROGRESS) -> list[str]:
        """Batched decoding (greedy, or sampled per request with its own seed); see the module docstring.

        Each request's output equals decoding it alone: its prompt is left-truncated to leave room for its token
        budget, it stops at EOS, at its budget, at the context length, or as soon as one of its stop strings
        appears in the decoded text, and the text is cut at the first occurrence of each stop string in turn.
        """
        import torch

        outputs: list[str] = [""] * len(requests)
        progress.start("generating", total=len(requests))
        prompts: list[list[int]] = []
        for req in requests:
            budget = max(1, req.max_tokens)
            prompts.append(self.tok_encode(req.prompt)[-max(1, self.max_length - budget):])
        order = sorted(range(len(requests)), key=lambda i: (len(prompts[i]), i))
        with torch.inference_mode():
            p = self._shared_prefix([tuple(t) for t in prompts]) if len(prompts) > 1 else 0
            prefix_kv = self._prefix_cache(prompts[0][:p]) if p else None
            batch: list[int] = []
            for i in order:
                rows = len(batch) + 1
                need = max(len(prompts[j]) + max(1, requests[j].max_tokens) for j in [*batch, i])
                if batch and (rows > self.batch_rows or rows * need > GENERATION_CACHE_TOKENS):
                    self._decode_batch(batch, requests, prompts=prompts, p=p, prefix_kv=prefix_kv, outputs=outputs,
                                       progress=progress)
                    batch = []
                batch.append(i)
            if batch:
                self._decode_batch(batch, requests, prompts=prompts, p=p, prefix_kv=prefix_kv, outputs=outputs,
                                   progress=progress)
        progress.finish("generating")
        return outputs

    def _decode_batch(self, batch: list[int], requests: Sequence[GenerationRequest], *, prompts: list[list[int]],
                      p: int, prefix_kv: list[tuple[Any, Any]] | None, outputs: list[str],
                      progress: Progress) -> None:
        """Decode the requests ``batch`` together behind the shared ``p``-token prefix.

        Cache slots: the prefix ``[0, p)``, then every row's own prompt tokens left-padded to the longest
        (padding is masked out), then one slot per step. Finished rows leave the batch (and the cache).
        """
        import torch

        n = len(batch)
        suffixes = [prompts[i][p:] for i in batch]
        width = max(len(x) for x in suffixes)
        dtype = next(self.model.parameters()).dtype
        neg = torch.finfo(dtype).min
        ids = torch.full((n, width), self.prefix_token_id, dtype=torch.long)
        pos = torch.zeros((n, width), dtype=torch.long)
        real = torch.zeros((n, p + width), dtype=torch.bool)  # which cache slots each row may attend to
        real[:, :p] = True
        for b, suffix in enumerate(suffixes):
            pad = width - len(suffix)
            ids[b, pad:] = torch.tensor(suffix, dtype=torch.long)
            pos[b, pad:] = torch.arange(p, p + len(suffix))
            real[b, p + pad:] = True
        causal = torch.ones((width, width), dtype=torch.bool).tril()
        allowed = real[:, None, :].repeat(1, width, 1)
        allowed[:, :, p:] &= causal[None]
        allowed[:, torch.arange(width), p + torch.arange(width)] = True  # padding sees itself, so it stays finite
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, neg)[:, None]
        cache = self._expanded_cache(prefix_kv, n) if prefix_kv is not None else self._empty_cache()
        kwargs: dict[str, Any] = {"input_ids": ids.to(self.device), "position_ids": pos.to(self.device),
                                  "attention_mask": mask.to(self.device), self._cache_kw: cache, "use_cache": True}
        logits = self._selected_logits(kwargs, torch.arange(n, device=self.device),
                                       torch.full((n,), width - 1, device=self.device)).float()
        eos = self.tokenizer.eos_token_id
        active = list(range(n))  # row index in the batch -> its position in `batch`
        generated: list[list[int]] = [[] for _ in batch]
        gens = [torch.Generator().manual_seed(requests[i].seed or 0) for i in batch]
        next_pos = torch.tensor([p + len(x) for x in suffixes], dtype=torch.long)
        step = 0
        while active:
            keep: list[int] = []
            tokens: list[int] = []
            for r, b in enumerate(active):
                req = requests[batch[b]]
                if req.temperature > 0:
                    probs = torch.softmax(logits[r] / req.temperature, dim=-1).cpu()
                    nxt = int(torch.multinomial(probs, 1, generator=gens[b]).item())
                else:
                    nxt = int(logits[r].argmax().item())
                if nxt != eos:
                    generated[b].append(nxt)
                if self._finished(req, nxt, eos, generated[b], len(prompts[batch[b]])):
                    outputs[batch[b]] = self._cut(req, generated[b])
                    progress.advance("generating")
                else:
                    keep.append(r)
                    tokens.append(nxt)
            if not keep:
                break
            if len(keep) < len(active):
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                real = real[keep]
                next_pos = next_pos[keep]
                active = [active[r] for r in keep]
            step += 1
            real = torch.cat([real, torch.ones((len(active), 1), dtype=torch.bool)], dim=1)
            mask = torch.zeros((len(active), 1, 1, real.shape[1]), dtype=dtype)
            mask.masked_fill_(~real[:, None, None, :], neg)
            kwargs = {"input_ids": torch.tensor(tokens, device=self.device)[:, None],
                      "position_ids": next_pos[:, None].to(self.device), "attention_mask": mask.to(self.device),
                      self._cache_kw: cache, "use_cache": True}
            next_pos = next_pos + 1
            rows = torch.arange(len(active), device=self.device)
            logits = self._selected_logits(kwargs, rows, torch.zeros_like(rows)).float()

    def _finished(self, req: GenerationRequest, token: int, eos: int | None, generated: list[int],
                  prompt_len: int) -> bool:
        if token == eos or len(generated) >= max(1, req.max_tokens) or prompt_len + len(generated) >= self.max_length:
            return True
        if not req.until:
            return False
        text = self.tokenizer.decode(generated, skip_special_tokens=True)
        return any(s and s in text for s in req.until)

    def _cut(self, req: GenerationRequest, generated: list[int]) -> str:
        text = str(self.tokenizer.decode(generated, skip_special_tokens=True))
        for stop in req.until:
            if stop and stop in text:
                text = text.split(stop)[0]
        return text

    def _empty_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache()

    def close(self) -> None:
        self.model = None
        import gc

        gc.collect()


# --------------------------------------------------------------------------------------------- loading
def _torch_dtype(dtype: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def _load_model(ref: ModelRef, *, dtype: str) -> tuple[Any, Any]:
    from transformers.utils import logging as hf_logging

    from assay.model.formats import Format, detect

    hf_logging.disable_progress_bar()  # progress is the caller's to draw (assay.progress), not tqdm's on stderr

    try:
        if ref.single_file:
            path = ref.root / ref.files[0]
            fmt = detect(path)
            if fmt == Format.GGUF:
                return _load_gguf(ref.root, path.name, dtype)
            if fmt == Format.SAFETENSORS:
                return _load_single_safetensors(ref, path, dtype)
            raise EvalError(f"{ref.spec}: a single {fmt.value} file cannot be evaluated (give its folder with "
                            f"config.json, a GGUF file, or a .safetensors file with config.json beside it)")
        root = ref.root
        if (root / "adapter_config.json").is_file():
            return _load_peft(ref, dtype)
        if (root / "config.json").is_file():
            return _load_folder(root, dtype)
        ggufs = [f for f in ref.files if f.name.endswith(".gguf") and len(f.parts) == 1]
        if len(ggufs) == 1:
            return _load_gguf(root, ggufs[0].name, dtype)
        raise EvalError(f"{ref.spec}: no config.json, adapter_config.json or single GGUF file, so there is no model "
                        f"to load")
    except EvalError:
        raise
    except Exception as exc:  # noqa: BLE001 - a loader failure of any kind is one line for the user
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise EvalError(f"cannot load model {ref.spec}: {type(exc).__name__}: {first}") from exc


def _load_folder(root: Path, dtype: str) -> tuple[Any, Any]:
    from transformers import AutoTokenizer

    model = _load_folder_model(root, dtype)
    tok = AutoTokenizer.from_pretrained(root, trust_remote_code=False, local_files_only=True)
    return model, tok


def _load_folder_model(root: Path, dtype: str) -> Any:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return AutoModelForCausalLM.from_pretrained(root, dtype=_torch_dtype(dtype), trust_remote_code=False,
                                                local_files_only=True)


def _load_config_and_tokenizer(ref: ModelRef) -> tuple[Any, Any]:
    """A folder's config and tokenizer, without its weights (for a lazy backend)."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(ref.root, trust_remote_code=False, local_files_only=True)
        tok = AutoTokenizer.from_pretrained(ref.root, trust_remote_code=False, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - a loader failure of any kind is one line for the user
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise EvalError(f"cannot load model {ref.spec}: {type(exc).__name__}: {first}") from exc
    return config, tok


def _load_gguf(root: Path, name: str, dtype: str) -> tuple[Any, Any]:
    from assay.model.gguf_load import load_gguf_model

    return load_gguf_model(root / name, dtype=_torch_dtype(dtype))


def _load_single_safetensors(ref: ModelRef, path: Path, dtype: str) -> tuple[Any, Any]:
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not (ref.root / "config.json").is_file():
        raise EvalError(f"{ref.spec}: a single .safetensors file needs a config.json beside it to be evaluated")
    config = AutoConfig.from_pretrained(ref.root, trust_remote_code=False, local_files_only=True)
    model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    state = load_file(str(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or ())
    real_missing = [k for k in missing if k not in tied and not k.endswith("lm_head.weight")]
    if real_missing or unexpected:
        raise EvalError(f"{ref.spec}: weights do not match config.json (missing {real_missing[:3]}, unexpected "
                        f"{list(unexpected)[:3]})")
    if any(k.endswith("lm_head.weight") for k in missing):
        model.tie_weights()
    model = model.to(_torch_dtype(dtype))
    tok = AutoTokenizer.from_pretrained(ref.root, trust_remote_code=False, local_files_only=True)
    return model, tok


def _load_peft(ref: ModelRef, dtype: str) -> tuple[Any, Any]:
    from peft import PeftModel

    base_ref = _adapter_base_ref(ref)
    base_model, tok = _load_model(base_ref, dtype=dtype)
    if (ref.root / "tokenizer.json").is_file() or (ref.root / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(ref.root, trust_remote_code=False, local_files_only=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft calls a deprecated transformers alias
        peft_model = PeftModel.from_pretrained(base_model, str(ref.root), is_trainable=False)
        return peft_model.merge_and_unload(), tok
