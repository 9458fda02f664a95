"""Drift: how far the candidate's next-token distributions moved from its base's, on the same tokens.

For every token position ``t`` of a set of documents, with ``P`` the candidate's and ``Q`` the base's next-token
distribution given the same preceding tokens, assay measures

    KL(P || Q) = sum_v P(v) * (log P(v) - log Q(v))          (nats; "KL of the candidate from the base")

i.e. the expectation is taken under the *candidate*: how surprised the base would be, on average, by what the
candidate predicts. This is the direction the task wording asks for ("divergence of the candidate's distribution
from the base's") and the one RLHF uses to measure how far a tuned policy moved from its reference model. The
other direction, KL(Q || P) (llama.cpp's ``--kl-divergence`` for quantised copies), is reported alongside as
``kl_reverse_mean``, as is the share of positions where both models' top token agrees.

Reported: the mean over all tokens, the 95th percentile of the per-token values (the tail: a few positions that
changed a lot), and a seeded bootstrap 95% interval of the mean, resampling whole documents.

The two models are never in memory together: the base runs first and its log-probabilities are written to a
float16 file on disk (one row per token, one column per vocabulary entry), then the candidate runs and is
compared row by row. Both sides are rounded to float16 and renormalised the same way, so a model compared with
itself gives exactly 0. The tokenizers must be identical (vocabulary, merges, special tokens): otherwise the
positions do not correspond and the comparison is refused.

    task = load_kl_task("builtin:reference")
    result = kl_drift(task, base=lambda: load_after_scan(resolve("./base")),
                      candidate=lambda: load_after_scan(resolve("./my-finetune")))
    result.mean, result.p95, result.ci      # nats per token
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from assay.errors import BackendError, EvalError
from assay.evaluate.tasks import Item, Task, TaskKind
from assay.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from assay.evaluate.backends.base import Backend

KL_VERSION = "1"
"""Version of the KL procedure (windowing, rounding); part of the task version."""

BOOTSTRAP_SAMPLES = 2000
"""Bootstrap resamples of documents for the interval of the mean."""

_ROWS_PER_CHUNK = 256


# ------------------------------------------------------------------------------------------------ tasks


def read_documents(path: Path) -> list[str]:
    """Documents of a UTF-8 text file: blocks separated by blank lines (each block's lines joined by spaces)."""
    from assay.evaluate.suites.builtin import split_documents

    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise EvalError(f"no such text file: {path}") from None
    except IsADirectoryError:
        raise EvalError(f"{path} is a folder; kl: needs one text file (documents separated by blank lines)") from None
    except UnicodeDecodeError as exc:
        raise EvalError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise EvalError(f"cannot read {path}: {exc.strerror}") from None
    return split_documents(text)


def load_kl_task(arg: str) -> Task:
    """``kl:builtin:reference`` or ``kl:PATH`` (a text file, documents separated by blank lines)."""
    if arg == "builtin:reference":
        from assay.evaluate.suites.builtin import reference_items, reference_version

        items, version, source = reference_items(), reference_version(), "builtin (assay, data/reference.txt)"
    elif arg.startswith("builtin:"):
        raise EvalError(f"kl:{arg}: only builtin:reference is a built-in text for KL (or give a text file)")
    else:
        path = Path(arg).expanduser()
        docs = read_documents(path)
        digest = hashlib.sha256("\n\n".join(docs).encode()).hexdigest()
        items = tuple(Item(id=f"doc{i}", text=d) for i, d in enumerate(docs, 1))
        version, source = digest[:12], f"{path} (sha256 {digest[:16]})"
    if not items:
        raise EvalError(f"kl:{arg}: no documents (the file is empty)")
    return Task(name=f"kl:{arg}", version=f"{KL_VERSION}-{version}", kind=TaskKind.KL, items=tuple(items),
                metrics=("kl_mean", "kl_p95"), source=source)


# -------------------------------------------------------------------------------------- distributions


@dataclass(frozen=True)
class TokenDistributions:
    """A model's next-token log-probabilities at every token of one document."""

    token_ids: np.ndarray
    """The document's token ids, shape ``(n,)`` (no BOS)."""
    logprobs: np.ndarray
    """``logprobs[i]`` is the log-distribution that predicted ``token_ids[i]``; shape ``(n, vocab)``, float32."""


@runtime_checkable
class DistributionSource(Protocol):
    """What KL needs from a backend: full next-token distributions and an identity for its tokenizer."""

    def tokenizer_fingerprint(self) -> str:
        """A digest of the tokenizer (vocabulary, merges, special tokens)."""

    def next_token_logprobs(self, text: str) -> TokenDistributions:
        """Log-distributions at every token of ``text`` (the first token is conditioned on BOS, else EOS)."""


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 over what decides token ids: the vocabulary, the BPE merges and the special tokens.

    Serialisation details that differ between library versions (merges as ``"a b"`` or ``["a", "b"]``, field
    order) do not change it. Pre-tokeniser differences that do change ids are caught by comparing each
    document's token ids as well.
    """
    merges: list[str] = []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        model = json.loads(backend.to_str()).get("model", {})
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", []) or []]
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    specials = sorted((str(k), str(v)) for k, v in getattr(tokenizer, "special_tokens_map", {}).items())
    blob = json.dumps([vocab, merges, specials], ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


def hf_next_token_logprobs(model: Any, tokenizer: Any, text: str, *, max_length: int | None = None,
                           device: str = "cpu") -> TokenDistributions:
    """Full next-token log-distributions of a transformers causal LM at every token of ``text``.

    The first token is conditioned on BOS (else EOS), as lm-evaluation-harness's rolling log-likelihood does.
    Documents longer than the model's context are cut into windows; each window predicts its second half with
    the preceding tokens (up to the context length) as context, so every token sees at least half a window.
    """
    import torch

    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if prefix is None:
        raise BackendError("the tokenizer has neither a BOS nor an EOS token to condition the first token on")
    limit = max_length or int(getattr(model.config, "max_position_embeddings", 0) or 2048)
    full = [prefix, *ids]
    rows: list[np.ndarray] = []
    start = 0  # index into ids of the next token to predict
    step = max(1, limit // 2)
    with torch.inference_mode():
        while start < len(ids):
            end = min(len(ids), start + (limit - 1 if start == 0 else step))
            ctx_from = max(0, end + 1 - limit)  # window over `full`: positions ctx_from .. end (inclusive)
            window = torch.tensor([full[ctx_from:end + 1]], device=device)
            logits = model(input_ids=window).logits[0].float()
            # logits[j] predicts full[ctx_from + j + 1] = ids[ctx_from + j]; we want ids[start:end]
            sel = logits[start - ctx_from:end - ctx_from]
            rows.append(torch.log_softmax(sel, dim=-1).cpu().numpy())
            start = end
    lp = np.concatenate(rows, axis=0) if rows else np.zeros((0, model.config.vocab_size), np.float32)
    return TokenDistributions(token_ids=np.asarray(ids, dtype=np.int64), logprobs=lp)


class HFDistributions:
    """A :class:`DistributionSource` over an in-memory transformers model and its tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, *, max_length: int | None = None, device: str = "cpu") -> None:
        self.model, self.tokenizer, self.max_length, self.device = model, tokenizer, max_length, device

    def tokenizer_fingerprint(self) -> str:
        return tokenizer_fingerprint(self.tokenizer)

    def next_token_logprobs(self, text: str) -> TokenDistributions:
        return hf_next_token_logprobs(self.model, self.tokenizer, text, max_length=self.max_length,
                                      device=self.device)


def distribution_source(backend: Any) -> DistributionSource:
    """The KL view of a backend: its own ``next_token_logprobs``/``tokenizer_fingerprint``, or its
    ``model``/``tokenizer`` (an in-process transformers backend); anything else is refused."""
    if isinstance(backend, DistributionSource):
        return backend
    model, tok = getattr(backend, "model", None), getattr(backend, "tokenizer", None)
    if model is not None and tok is not None:
        max_length = getattr(backend, "max_length", None)
        return HFDistributions(model, tok, device=str(getattr(backend, "device", "cpu")),
                               max_length=max_length if isinstance(max_length, int) else None)
    name = getattr(getattr(backend, "info", None), "backend", type(backend).__name__)
    raise BackendError(f"KL drift needs full next-token distributions, which the {name} backend cannot give "
                       "(servers return only the top few log-probabilities); run kl: tasks with --backend hf")


# -------------------------------------------------------------------------------------------- the store


def _normalise(lp: np.ndarray) -> np.ndarray:
    """Round to float16 (as stored) and renormalise, in float32."""
    x = lp.astype(np.float16).astype(np.float32)
    m = x.max(axis=-1, keepdims=True)
    out: np.ndarray = x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))
    return out


@dataclass
class BaseDistributions:
    """The base model's log-distributions for every document, in a float16 file on disk."""

    path: Path
    """The float16 matrix file, rows = tokens of all documents in order."""
    vocab: int
    """Columns per row."""
    fingerprint: str
    """The base tokenizer's fingerprint."""
    doc_ids: list[str] = field(default_factory=list)
    """Item ids in order."""
    token_ids: list[np.ndarray] = field(default_factory=list)
    """Token ids of each document."""
    offsets: list[int] = field(default_factory=list)
    """First row of each document."""

    @classmethod
    def collect(cls, source: DistributionSource, items: Sequence[Item], *, directory: Path,
                progress: Progress = NULL_PROGRESS) -> BaseDistributions:
        """Run the base over every document and write its distributions to ``directory``."""
        path = directory / "base-logprobs.f16"
        store: BaseDistributions | None = None
        progress.start("kl: base", total=len(items))
        with path.open("wb") as fh:
            row = 0
            for item in items:
                if not item.text:
                    raise EvalError(f"KL item {item.id} has no text")
                d = source.next_token_logprobs(item.text)
                if store is None:
                    store = cls(path=path, vocab=int(d.logprobs.shape[1]), fingerprint=source.tokenizer_fingerprint())
                store.doc_ids.append(item.id)
                store.token_ids.append(d.token_ids)
                store.offsets.append(row)
                fh.write(d.logprobs.astype(np.float16).tobytes())
                row += len(d.token_ids)
                progress.advance("kl: base")
        progress.finish("kl: base")
        if store is None:
            raise EvalError("KL needs at least one document")
        store.offsets.append(row)
        return store

    def rows(self, k: int) -> np.ndarray:
        """The stored float16 rows of document ``k`` (memory-mapped)."""
        total = self.offsets[-1]
        if total == 0:
            return np.zeros((0, self.vocab), np.float16)
        mm = np.memmap(self.path, dtype=np.float16, mode="r", shape=(total, self.vocab))
        return mm[self.offsets[k]:self.offsets[k + 1]]


# ------------------------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class KLResult:
    """Per-token KL divergence of the candidate from the base over a set of documents."""

    direction: str
    """``KL(candidate || base)``: expectation under the candidate's distribution, in nats."""
    mean: float
    """Mean over all scored tokens."""
    p95: float
    """95th percentile of the per-token values (the tail)."""
    ci: tuple[float, float]
    """Seeded bootstrap 95% interval of :attr:`mean`, resampling documents."""
    reverse_mean: float
    """Mean of KL(base || candidate), for comparison with tools that use that direction."""
    top1_agreement: float
    """Share of positions where both models' most likely next token is the same."""
    n_tokens: int
    """Tokens scored."""
    n_documents: int
    """Documents scored."""
    per_document: tuple[float, ...]
    """Mean KL of each document, in item order."""
    tokenizer: str
    """Fingerprint of the (shared) tokenizer."""
    comparable: bool = True
    """False when the candidate's tokenizer differs from the base's: KL per token is then undefined (the two
    models predict different units), nothing was measured and :attr:`note` says why."""
    note: str = ""
    """Why the KL was not measured."""

    def metrics(self) -> dict[str, float]:
        """Flat metrics for the result table: kl_mean, kl_p95, kl_reverse_mean, top1_agreement."""
        return {"kl_mean": self.mean, "kl_p95": self.p95, "kl_reverse_mean": self.reverse_mean,
                "top1_agreement": self.top1_agreement}


def _kl_rows(cand: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row KL(c||b), KL(b||c) and top-1 agreement for normalised log-distributions."""
    pc, pb = np.exp(cand), np.exp(base)
    diff = cand - base
    fwd = np.maximum((pc * diff).sum(axis=-1), 0.0)
    rev = np.maximum((-pb * diff).sum(axis=-1), 0.0)
    agree = cand.argmax(axis=-1) == base.argmax(axis=-1)
    return fwd, rev, agree


def compare_with_base(source: DistributionSource, store: BaseDistributions, items: Sequence[Item], *,
                      seed: int = 0, progress: Progress = NULL_PROGRESS) -> KLResult:
    """Run the candidate over the same documents and compare with the stored base distributions."""
    fp = source.tokenizer_fingerprint()
    if fp != store.fingerprint:
        nan = float("nan")
        return KLResult(direction="KL(candidate || base)", mean=nan, p95=nan, ci=(nan, nan), reverse_mean=nan,
                        top1_agreement=nan, n_tokens=0, n_documents=len(items), per_document=(), tokenizer=fp,
                        comparable=False,
                        note=f"not compared: the candidate's tokenizer ({fp[:12]}) differs from the base's "
                             f"({store.fingerprint[:12]}), so per-token KL is undefined; compare bits per byte "
                             f"instead")
    fwd_all: list[np.ndarray] = []
    rev_all: list[np.ndarray] = []
    agree_all: list[np.ndarray] = []
    progress.start("kl: candidate", total=len(items))
    for k, item in enumerate(items):
        d = source.next_token_logprobs(item.text or "")
        if not np.array_equal(d.token_ids, store.token_ids[k]):
            raise EvalError(f"KL: document {item.id} tokenises differently for the candidate and the base")
        base_rows = store.rows(k)
        vocab = min(base_rows.shape[1], d.logprobs.shape[1])
        fwd, rev, agree = [], [], []
        for a in range(0, len(d.token_ids), _ROWS_PER_CHUNK):
            b = a + _ROWS_PER_CHUNK
            f, r, g = _kl_rows(_normalise(d.logprobs[a:b, :vocab]), _normalise(base_rows[a:b, :vocab]))
            fwd.append(f)
            rev.append(r)
            agree.append(g)
        fwd_all.append(np.concatenate(fwd) if fwd else np.zeros(0))
        rev_all.append(np.concatenate(rev) if rev else np.zeros(0))
        agree_all.append(np.concatenate(agree) if agree else np.zeros(0, bool))
        progress.advance("kl: candidate")
    progress.finish("kl: candidate")
    return summarise(fwd_all, rev_all, agree_all, fingerprint=fp, seed=seed)


def summarise(fwd: Sequence[np.ndarray], rev: Sequence[np.ndarray], agree: Sequence[np.ndarray], *,
              fingerprint: str, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES) -> KLResult:
    """Mean, 95th percentile and a document bootstrap interval from per-token values grouped by document."""
    tokens = np.concatenate(fwd) if fwd else np.zeros(0)
    if tokens.size == 0:
        raise EvalError("KL: the documents have no tokens")
    sums = np.array([x.sum() for x in fwd])
    counts = np.array([x.size for x in fwd])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(fwd), size=(samples, len(fwd)))
    boot = sums[picks].sum(axis=1) / np.maximum(counts[picks].sum(axis=1), 1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return KLResult(direction="KL(candidate || base)", mean=float(tokens.mean()),
                    p95=float(np.percentile(tokens, 95)), ci=(float(lo), float(hi)),
                    reverse_mean=float(np.concatenate(rev).mean()),
                    top1_agreement=float(np.concatenate(agree).mean()), n_tokens=int(tokens.size),
                    n_documents=len(fwd),
                    per_document=tuple(float(x.mean()) if x.size else 0.0 for x in fwd), tokenizer=fingerprint)


@contextmanager
def _workdir(directory: Path | None) -> Iterator[Path]:
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        yield directory
        return
    with tempfile.TemporaryDirectory(prefix="assay-kl-", dir=os.environ.get("ASSAY_TMPDIR")) as tmp:
        yield Path(tmp)


def kl_drift(task: Task, *, base: Callable[[], Backend | DistributionSource],
             candidate: Callable[[], Backend | DistributionSource], seed: int = 0, workdir: Path | None = None,
             progress: Progress = NULL_PROGRESS) -> KLResult:
    """KL of the candidate from the base on ``task``'s documents, one model in memory at a time.

    ``base`` and ``candidate`` open a backend when called; each is closed (``close()``) before the next opens.
    The base's distributions live in a temporary float16 file under ``workdir`` (default: a temporary folder,
    removed afterwards).
    """
    if task.kind is not TaskKind.KL:
        raise EvalError(f"{task.name} is a {task.kind.value} task, not a KL task")
    items = [it for it in task.items if it.text]
    if not items:
        raise EvalError(f"{task.name}: no documents")
    with _workdir(workdir) as tmp:
        b = base()
        try:
            store = BaseDistributions.collect(distribution_source(b), items, directory=tmp, progress=progress)
        finally:
            _close(b)
        c = candidate()
        try:
            src = distribution_source(c)
            return compare_with_base(src, store, items, seed=seed, progress=progress)
        finally:
            _close(c)


class KLSession:
    """KL drift for a run that loads each model once: record the base while it is loaded, compare the candidate
    while it is loaded (this is how ``assay eval --base`` runs ``kl:`` tasks next to the others).

        with KLSession(kl_tasks, limit=limit, seed=seed) as kl:
            kl.record_base(base_backend)          # base loaded
            ...                                   # base closed, candidate loaded
            results = kl.compare(candidate_backend)
    """

    def __init__(self, tasks: Sequence[Task], *, limit: int | None = None, seed: int = 0,
                 workdir: Path | None = None) -> None:
        for t in tasks:
            if t.kind is not TaskKind.KL:
                raise EvalError(f"{t.name} is a {t.kind.value} task, not a KL task")
        self.tasks = list(tasks)
        self.items = {t.name: [it for it in (t.items[:limit] if limit else t.items) if it.text] for t in tasks}
        for name, items in self.items.items():
            if not items:
                raise EvalError(f"{name}: no documents")
        self.seed = seed
        self._ctx = _workdir(workdir)
        self._dir: Path | None = None
        self._stores: dict[str, BaseDistributions] = {}

    def __enter__(self) -> KLSession:
        self._dir = self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(None, None, None)

    def record_base(self, backend: Any, *, progress: Progress = NULL_PROGRESS) -> None:
        """Run the base over every KL task's documents and keep its distributions on disk."""
        if self._dir is None:
            raise RuntimeError("use KLSession as a context manager")
        src = distribution_source(backend)
        for k, t in enumerate(self.tasks):
            sub = self._dir / f"task{k}"
            sub.mkdir(exist_ok=True)
            self._stores[t.name] = BaseDistributions.collect(src, self.items[t.name], directory=sub,
                                                             progress=progress)

    def compare(self, backend: Any, *, progress: Progress = NULL_PROGRESS) -> dict[str, KLResult]:
        """KL of the candidate from the recorded base, per task name."""
        if len(self._stores) != len(self.tasks):
            raise EvalError("KL tasks need --base: the base model's distributions were not recorded")
        src = distribution_source(backend)
        return {t.name: compare_with_base(src, self._stores[t.name], self.items[t.name], seed=self.seed,
                                          progress=progress) for t in self.tasks}


def kl_document(result: KLResult) -> dict[str, Any]:
    """The JSON form of a :class:`KLResult` (``tasks.<name>`` of ``assay.eval/1``)."""
    return {"kind": "kl", "direction": result.direction, "n": result.n_documents, "tokens": result.n_tokens,
            "metrics": result.metrics(), "ci": {"kl_mean": list(result.ci)},
            "per_document": list(result.per_document), "tokenizer": result.tokenizer,
            "comparable": result.comparable, "note": result.note}


def _close(obj: object) -> None:
    close = getattr(obj, "close", None)
    if callable(close):
        close()
