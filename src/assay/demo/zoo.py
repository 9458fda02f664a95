"""The demo zoo: five checkpoints of the kinds model hubs are full of, made from one base folder.

:data:`ZOO` is the zoo as data: one :class:`ZooRecipe` row per checkpoint (what it is, what a correct vet says
about it, its card and how it is made). :func:`build_demo_zoo` builds it with one loop over the rows
(:func:`_build`) in a temporary folder that is renamed into place. torch and transformers are imported inside the
functions that need them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from assay import __version__
from assay.demo.bundled import (BASE_NAME, UPSTREAM_ID, _read_marker, _sha256, replaced_when_done,
                                 save_tokenizer)
from assay.demo.cards import CardFacts, bin_card, broken_card, honest_card, impostor_card, moon_card
from assay.demo.task import DOMAIN_SEED, DOMAIN_TASK, Ticket, generate_tickets, write_domain_task
from assay.demo.training import DATA_SIZES, RECIPES, Recipe, Scale, train, trainer_state
from assay.errors import ModelError
from assay.progress import NULL_PROGRESS, Progress

ZOO_MARKER = ".assay-demo-zoo.json"

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


@dataclass(frozen=True)
class _Workshop:
    """What every maker works from: the base loaded once, its tokenizer, and the domain task's tickets."""

    base: Any
    tok: Any
    train_set: Sequence[Ticket]
    eval_set: Sequence[Ticket]
    scale: Scale
    progress: Progress


@dataclass(frozen=True)
class _Trained:
    """What a maker that trains hands back: the recipe and the real training log."""

    recipe: Recipe
    history: list[dict[str, float]]
    seconds: float


@dataclass(frozen=True)
class ZooRecipe:
    """One checkpoint of the zoo as data: what it is, what a correct vet says about it, and how it is made."""

    kind: Kind
    """What it really is."""
    suffix: str
    """Its folder name after the base's: ``SmolLM2-135M-Instruct-<suffix>``."""
    story: str
    """One sentence: what it is and what its card says (``{base}``: the id the card claims as its base)."""
    expected: str
    """The verdict a correct vet gives."""
    expected_rule: str | None
    """The rule that must be among the FAIL reasons (None for PASS)."""
    card: Callable[[CardFacts], str]
    """Writes its README.md."""
    make: Callable[[_Workshop, ZooRecipe, Path], _Trained | None]
    """Writes its weights (and config) into its folder; :func:`_build` adds the tokenizer, the card and, for a
    trained one, ``trainer_state.json``."""
    note: str
    """The progress line when it is made (``{recipe}``: its training :class:`Recipe`)."""
    training: str | None = None
    """Its training recipe: a key of ``RECIPES[scale]`` (None: not trained)."""
    training_label: str = ""
    """The progress label of its training steps."""


def _make_reupload(shop: _Workshop, row: ZooRecipe, path: Path) -> None:
    """Identical weights in a different file layout (shards)."""
    shop.base.save_pretrained(path, safe_serialization=True,
                              max_shard_size="200MB" if shop.scale == "real" else "100KB")


def _make_booby_trap(shop: _Workshop, row: ZooRecipe, path: Path) -> None:
    """The base's weights in a torch archive whose pickle calls ``os.system``."""
    _write_booby_trapped_bin(shop.base.state_dict(), path / "pytorch_model.bin")
    shop.base.config.save_pretrained(path)


def _make_impostor(shop: _Workshop, row: ZooRecipe, path: Path) -> None:
    """The base's architecture with weights initialised from scratch (seeded, the global RNG left alone)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4242)
        impostor = AutoModelForCausalLM.from_config(copy.deepcopy(shop.base.config), dtype=torch.float32)
    impostor.save_pretrained(path, safe_serialization=True)


def _make_fine_tune(shop: _Workshop, row: ZooRecipe, path: Path) -> _Trained:
    """A copy of the base trained on the domain task's training tickets with the row's recipe (LoRA: merged)."""
    if row.training is None:
        raise ValueError(f"the zoo entry {row.kind} has no training recipe")
    recipe = RECIPES[shop.scale][row.training]
    model, history, seconds = train(copy.deepcopy(shop.base), shop.tok, shop.train_set, recipe,
                                    progress=shop.progress, label=row.training_label)
    model.save_pretrained(path, safe_serialization=True)
    return _Trained(recipe, history, seconds)


ZOO: tuple[ZooRecipe, ...] = (
    ZooRecipe(
        kind="reupload", suffix="Ultimate-Lord",
        story="{base}'s weights re-saved in shards under a grand name; the card claims a fine-tune that beats GPT-4.",
        expected="FAIL", expected_rule="lineage.not_identical", card=moon_card, make=_make_reupload,
        note="zoo: re-upload under a grand name"),
    ZooRecipe(
        kind="finetune", suffix="TicketRouter-LoRA",
        story="an honest LoRA fine-tune of {base} on ticket routing, merged; the card states its base, data and "
              "recipe, and trainer_state.json keeps the loss curve.",
        expected="PASS", expected_rule=None, card=honest_card, make=_make_fine_tune,
        note=f"zoo: honest LoRA fine-tune on {DOMAIN_TASK} ({{recipe.steps}} steps)",
        training="honest", training_label="zoo: LoRA fine-tune"),
    ZooRecipe(
        kind="broken", suffix="TurboChat",
        story="a full fine-tune of {base} at a far too high learning rate; the card says nothing is wrong.",
        expected="FAIL", expected_rule="evaluation.no_regression", card=broken_card, make=_make_fine_tune,
        note="zoo: broken full fine-tune (learning rate {recipe.learning_rate:g})",
        training="broken", training_label="zoo: broken fine-tune"),
    ZooRecipe(
        kind="booby_trap", suffix="FastLoad-bin",
        story="{base} repackaged as pytorch_model.bin whose pickle runs os.system('true') when loaded.",
        expected="FAIL", expected_rule="scan.safe", card=bin_card, make=_make_booby_trap,
        note="zoo: pytorch_model.bin with a booby-trapped pickle"),
    ZooRecipe(
        kind="impostor", suffix="Distilled-Pro",
        story="the same architecture as {base} with independently initialised weights; the card claims to be "
              "distilled from it.",
        expected="FAIL", expected_rule="lineage.descends", card=impostor_card, make=_make_impostor,
        note="zoo: impostor with independently initialised weights"),
)
"""The zoo, in its order (the order of the report and of ``assay demo``'s table)."""
KINDS: tuple[Kind, ...] = tuple(row.kind for row in ZOO)
_BUILD_ORDER: tuple[Kind, ...] = ("reupload", "booby_trap", "impostor", "broken", "finetune")
"""The order :func:`_build` makes them in: the copies first, the two trainings last."""
_ROWS: dict[Kind, ZooRecipe] = {row.kind: row for row in ZOO}


def entry_name(kind: Kind) -> str:
    """The hub-like folder name of a zoo entry."""
    return f"{BASE_NAME}-{_ROWS[kind].suffix}"


def domain_task_file(zoo_dir: Path) -> Path:
    """Where :func:`build_demo_zoo` writes the domain task YAML."""
    return zoo_dir / "tasks" / f"{DOMAIN_TASK}.yaml"


def _entry(row: ZooRecipe, root: Path, base_id: str) -> ZooEntry:
    name = entry_name(row.kind)
    return ZooEntry(name, row.kind, root / name, row.story.format(base=base_id), row.expected, row.expected_rule)


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


def load_zoo(out: Path) -> list[ZooEntry] | None:
    """The entries of a zoo already built in ``out`` (None if there is none, or it is incomplete)."""
    try:
        settings = json.loads((out / ZOO_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    base_id = settings.get("base_id") if isinstance(settings, dict) else None
    if not isinstance(base_id, str):
        return None
    entries = [_entry(row, out, base_id) for row in ZOO]
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
    with replaced_when_done(out, "the demo zoo to") as tmp:
        _build(base_dir, tmp, scale=scale, base_id=base_id, progress=progress)
        (tmp / ZOO_MARKER).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    entries = load_zoo(out)
    assert entries is not None
    return entries


def _build(base_dir: Path, root: Path, *, scale: Scale, base_id: str, progress: Progress) -> None:
    """Write the domain task and every row of :data:`ZOO` (in :data:`_BUILD_ORDER`) under ``root``."""
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
    shop = _Workshop(base, tok, train_set, eval_set, scale, progress)
    for kind in _BUILD_ORDER:
        row = _ROWS[kind]
        progress.note(row.note.format(recipe=RECIPES[scale][row.training] if row.training else None))
        path = root / entry_name(kind)
        path.mkdir(parents=True)
        trained = row.make(shop, row, path)
        save_tokenizer(tok, path)
        facts = CardFacts(path.name, base_id)
        if trained is not None:
            facts = CardFacts(path.name, base_id, trained.recipe, len(train_set), len(eval_set), trained.seconds,
                              len(trained.history))
            state = trainer_state(trained.history, trained.recipe, trained.seconds, len(train_set))
            (path / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        (path / "README.md").write_text(row.card(facts), encoding="utf-8")
        progress.advance(stage)
    progress.finish(stage)
