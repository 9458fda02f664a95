"""What ``assay vet`` refuses as bad input before any long work: a candidate or base that is not a model, bad
evaluation task specs, an unreadable trusted key.

    _require_model(resolve("./notes.txt"), "candidate")   # ModelError: the candidate is not a model assay can vet:
                                                          #   ./notes.txt is not a weights file (its content is ...)

:func:`assay.vet.run.run_vet` calls these before the first stage; the ``base_scan`` stage checks a base taken from
the card the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from assay.errors import AssayError, ModelError, PolicyError
from assay.model.formats import Format, detect
from assay.model.ref import ModelRef
from assay.policy import Policy

if TYPE_CHECKING:
    from assay.evaluate.tasks import Task

#: Weight formats ``assay vet`` can take as a candidate (others are refused as bad input).
VET_FORMATS = frozenset({Format.SAFETENSORS, Format.GGUF, Format.TORCH_ZIP, Format.PICKLE})


def _weight_formats(ref: ModelRef) -> set[Format]:
    found: set[Format] = set()
    for rel in ref.files:
        path = ref.path(rel)
        if not path.is_file():  # follows links: a Hugging Face cache snapshot is links into its blobs
            continue
        try:
            fmt = detect(path)
        except AssayError:
            continue
        if fmt in VET_FORMATS:
            found.add(fmt)
    return found


def _require_model(ref: ModelRef, role: str) -> None:
    """Refuse, as bad input, a reference with no weights file vet can read (e.g. a lone ONNX or text file)."""
    if not _weight_formats(ref):
        if ref.single_file:
            try:
                content = detect(ref.path(ref.files[0])).value
            except AssayError:
                content = "unreadable"
            what = f"{ref.spec} is not a weights file (its content is {content})"
        else:
            what = f"folder {ref.spec} has no weights file"
        raise ModelError(f"the {role} is not a model assay can vet: {what}; supported formats are safetensors, "
                         "GGUF, torch archive and pickle")



def _load_tasks(specs: Sequence[str]) -> list[Task]:
    """The evaluation tasks, each checked as `assay eval` checks it; a bad spec raises (bad input, exit 2)."""
    from assay.evaluate.loading import load_tasks
    from assay.evaluate.runner import validate_task

    loaded = [t for s in specs for t in load_tasks(s)]
    for t in loaded:
        validate_task(t)
    return loaded


def _check_trusted_keys(policy: Policy) -> None:
    """Refuse a ``signature.trusted_keys`` entry that is not a readable PEM public key, before any work."""
    if not policy.signature.trusted_keys:
        return
    from assay.provenance.signing import load_public_key

    for key in policy.signature.trusted_keys:
        try:
            load_public_key(Path(key).read_bytes())
        except OSError as exc:
            raise PolicyError(f"cannot read trusted key {key} (signature.trusted_keys): "
                              f"{exc.strerror or exc}") from exc
        except AssayError as exc:
            raise PolicyError(f"trusted key {key} (signature.trusted_keys): {exc.message}") from exc
