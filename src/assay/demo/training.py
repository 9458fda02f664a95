"""Training the demo's fine-tunes: :data:`RECIPES` (the honest LoRA and the broken full fine-tune per scale), the
losses, :func:`train` and the ``trainer_state.json`` it leaves behind. torch and peft are imported inside the
functions that need them."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from assay.demo.bundled import DemoError
from assay.demo.task import TEAMS, Ticket
from assay.progress import NULL_PROGRESS, Progress

Scale = Literal["real", "tiny"]
"""``real`` for SmolLM2-135M, ``tiny`` for the test factory's model: picks :data:`RECIPES` and :data:`DATA_SIZES`."""


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
