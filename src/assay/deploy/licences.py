"""Licences of open-weight models as data, and the policy checks over them.

The table lives in ``assay/deploy/data/licences.yaml`` (one entry per licence id a model card can name, with its
key terms: commercial use, monthly-active-user cap and the clause that sets it, attribution and naming duties,
acceptable-use policy, whether derivatives stay bound). This module reads it and answers questions about it.

    >>> lookup("llama3.1").mau_cap
    700000000
    >>> [v.rule for v in check_licence("llama3.1", allow=(), deny=(), monthly_active_users=900_000_000)]
    ['LICENCE-MAU-CAP']

Allow and deny entries are licence ids (``apache-2.0``), shell-style globs (``llama*``, ``cc-by-nc*``) or a
licence kind (``kind:non-commercial``, ``kind:permissive``). The table summarises terms to flag what needs a
lawyer's eye; it is not legal advice.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from assay.errors import DeployError
from assay.policy import LICENCE_KINDS as KINDS  # the kinds a licence can be: the policy names them (kind:NAME)


@dataclass(frozen=True)
class Licence:
    """One licence and its key terms (an entry of ``data/licences.yaml``)."""

    id: str
    """The id model cards use (``apache-2.0``, ``llama3.1``, ``gemma``)."""
    name: str
    """Display name."""
    url: str
    """Where the full text is."""
    kind: str
    """One of :data:`KINDS`."""
    commercial_use: str
    """``yes``, ``no`` or ``conditional`` (allowed with a cap or extra conditions)."""
    mau_cap: int | None
    """Monthly active users above which a separate licence is needed (None: no cap)."""
    mau_clause: str | None
    """The clause that sets the cap."""
    attribution: str | None
    """What a distribution must show or ship."""
    naming: str | None
    """Naming duty for derivative models."""
    naming_prefix: str | None
    """The prefix a derivative model's name must start with (Llama 3.1+: ``Llama``)."""
    acceptable_use_policy: bool
    """True when an acceptable-use (prohibited uses) policy binds every user."""
    acceptable_use_clause: str | None
    """Where that policy is imposed."""
    derivatives_keep_licence: bool
    """True when derivative models stay bound by this licence's terms."""
    derivatives_clause: str | None
    """The clause that carries the terms to derivatives."""
    compatible: tuple[str, ...]
    """Licences a derivative may carry instead of this one (when :attr:`derivatives_keep_licence`)."""
    aliases: tuple[str, ...]
    """Other names cards use for it (``license_name:`` values)."""
    family: str | None
    """Model family whose checkpoints use it."""
    notes: str | None
    """Anything else a reviewer should know."""

    @property
    def permissive(self) -> bool:
        """True for licences that put no duty on derivatives beyond notices."""
        return self.kind == "permissive"


@dataclass(frozen=True)
class Violation:
    """A licence term or policy rule the intended use breaks (or cannot be checked against)."""

    rule: str
    """Stable id: ``LICENCE-DENIED``, ``LICENCE-NOT-ALLOWED``, ``LICENCE-MAU-CAP``, ``LICENCE-NON-COMMERCIAL``,
    ``LICENCE-MISSING`` or ``LICENCE-UNKNOWN``."""
    severity: str
    """``fail`` (the policy is violated) or ``warn`` (it could not be checked)."""
    licence: str | None
    """The licence id concerned (None when the model declares none)."""
    message: str
    """One sentence for the user."""
    clause: str | None = None
    """The licence clause or policy key that the rule comes from."""


_FIELDS = {"name", "url", "kind", "commercial_use", "mau_cap", "mau_clause", "attribution", "naming",
           "naming_prefix", "acceptable_use_policy", "acceptable_use_clause", "derivatives_keep_licence",
           "derivatives_clause", "compatible", "aliases", "family", "notes"}


def _load_yaml(name: str) -> Any:
    text = resources.files("assay.deploy").joinpath("data", name).read_text(encoding="utf-8")
    return yaml.safe_load(text)


@functools.cache
def all_licences() -> dict[str, Licence]:
    """Every licence in the table, by id."""
    raw = _load_yaml("licences.yaml")
    out: dict[str, Licence] = {}
    for key, entry in raw.items():
        unknown = set(entry) - _FIELDS
        if unknown:  # the table ships with assay: a typo in it is a bug, caught by the tests
            raise ValueError(f"licences.yaml: {key}: unknown fields {sorted(unknown)}")
        kind = entry["kind"]
        if kind not in KINDS:
            raise ValueError(f"licences.yaml: {key}: unknown kind {kind!r}")
        out[str(key)] = Licence(
            id=str(key), name=entry["name"], url=entry["url"], kind=kind,
            commercial_use=str(entry["commercial_use"]), mau_cap=entry.get("mau_cap"),
            mau_clause=entry.get("mau_clause"), attribution=entry.get("attribution"), naming=entry.get("naming"),
            naming_prefix=entry.get("naming_prefix"),
            acceptable_use_policy=bool(entry.get("acceptable_use_policy", False)),
            acceptable_use_clause=entry.get("acceptable_use_clause"),
            derivatives_keep_licence=bool(entry.get("derivatives_keep_licence", False)),
            derivatives_clause=entry.get("derivatives_clause"),
            compatible=tuple(entry.get("compatible") or ()), aliases=tuple(entry.get("aliases") or ()),
            family=entry.get("family"), notes=entry.get("notes"))
    return out


def _key(text: str) -> str:
    return re.sub(r"[\s_]+", "-", text.strip().lower())


@functools.cache
def _alias_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for lic in all_licences().values():
        index[_key(lic.id)] = lic.id
        index[_key(lic.name)] = lic.id
        for alias in lic.aliases:
            index[_key(alias)] = lic.id
    return index


def normalise(licence_id: str) -> str:
    """The table's id for ``licence_id`` (case, spaces and aliases folded); unknown ids come back lower-cased."""
    key = _key(licence_id)
    return _alias_index().get(key, key)


def lookup(licence_id: str | None) -> Licence | None:
    """The licence named ``licence_id`` (an id, an alias or a display name), or None if the table lacks it."""
    if not licence_id:
        return None
    return all_licences().get(normalise(licence_id))


def card_licence(license_field: Any, license_name: Any = None) -> str | None:
    """The licence a card declares: ``license:``, or ``license_name:`` when ``license`` is ``other``."""
    value = license_field[0] if isinstance(license_field, list) and license_field else license_field
    if not isinstance(value, str) or not value.strip():
        return str(license_name).strip() if isinstance(license_name, str) and license_name.strip() else None
    if value.strip().lower() in ("other", "unknown") and isinstance(license_name, str) and license_name.strip():
        return normalise(license_name)
    return normalise(value)


@functools.cache
def _base_rules() -> tuple[tuple[re.Pattern[str], str], ...]:
    return tuple((re.compile(rule["pattern"], re.IGNORECASE), str(rule["licence"]))
                 for rule in _load_yaml("base_licences.yaml"))


def guess_licence_from_name(model_id: str) -> tuple[str, str] | None:
    """``(licence id, pattern)`` for a well-known base model id (``meta-llama/Llama-3.1-8B`` -> ``llama3.1``).

    The rules are in ``data/base_licences.yaml``; a guess is only used when the base's own card is not at hand.
    """
    for pattern, licence in _base_rules():
        if pattern.search(model_id.strip()):
            return licence, pattern.pattern
    return None


def matches(licence_id: str, entry: str) -> bool:
    """True if an allow/deny ``entry`` (id, glob or ``kind:<kind>``) covers ``licence_id``."""
    entry = entry.strip()
    lic = lookup(licence_id)
    if entry.lower().startswith("kind:"):
        return lic is not None and lic.kind == entry.split(":", 1)[1].strip().lower()
    norm = normalise(licence_id)
    if any(ch in entry for ch in "*?["):
        return fnmatch.fnmatchcase(norm, entry.lower())
    return norm == normalise(entry)


def check_licence(licence_id: str | None, *, allow: Iterable[str] = (), deny: Iterable[str] = (),
                  monthly_active_users: int | None = None,
                  commercial: bool | None = None) -> list[Violation]:
    """The violations of a licence policy by a model under ``licence_id``.

    ``allow`` (empty: anything not denied), ``deny``, the deployment's ``monthly_active_users`` (checked against
    the licence's cap) and ``commercial`` (True: the use is commercial, so non-commercial licences violate).
    """
    allow, deny = [a for a in allow if a], [d for d in deny if d]
    for entry in (*allow, *deny):
        if entry.lower().startswith("kind:") and entry.split(":", 1)[1].strip().lower() not in KINDS:
            raise DeployError(f"unknown licence kind in policy: {entry!r} (known: {', '.join(KINDS)})")
    if monthly_active_users is not None and monthly_active_users < 0:
        raise DeployError("licence.monthly_active_users must be zero or more")
    out: list[Violation] = []
    if not licence_id:
        sev = "fail" if allow else "warn"
        out.append(Violation("LICENCE-MISSING", sev, None, "the model declares no licence"
                             + (" and the policy allows only listed licences" if allow else ""),
                             "licence.allow" if allow else None))
        return out
    norm = normalise(licence_id)
    lic = lookup(norm)
    denied = [d for d in deny if matches(norm, d)]
    if denied:
        out.append(Violation("LICENCE-DENIED", "fail", norm, f"licence {norm} is denied by the policy ({denied[0]})",
                             "licence.deny"))
    if allow and not any(matches(norm, a) for a in allow):
        out.append(Violation("LICENCE-NOT-ALLOWED", "fail", norm,
                             f"licence {norm} is not in the policy's allow list ({', '.join(allow)})",
                             "licence.allow"))
    if lic is None:
        out.append(Violation("LICENCE-UNKNOWN", "warn", norm,
                             f"licence {norm!r} is not in assay's licence table: its terms could not be checked"))
        return out
    if monthly_active_users is not None and lic.mau_cap is not None and monthly_active_users > lic.mau_cap:
        out.append(Violation("LICENCE-MAU-CAP", "fail", norm,
                             f"{monthly_active_users:,} monthly active users exceed the {lic.name} cap of "
                             f"{lic.mau_cap:,}: a separate licence from the licensor is needed",
                             lic.mau_clause))
    if commercial and lic.commercial_use == "no":
        out.append(Violation("LICENCE-NON-COMMERCIAL", "fail", norm,
                             f"{lic.name} does not permit commercial use", lic.derivatives_clause or lic.url))
    return out
