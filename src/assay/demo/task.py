"""The demo's domain task: synthetic support tickets routed to four desks by a fixed rule, written as an
lm-evaluation-harness style task YAML over local JSONL files."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
