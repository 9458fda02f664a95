"""assay imports downwards only, with no import cycle: a proof over the source, not a convention.

The checker reads every module under ``src/assay`` with :mod:`ast` (nothing is imported) and collects every
import statement wherever it stands: at the top, inside functions and methods, under ``try``, and under
``if TYPE_CHECKING:``. Those count too: an annotation-only import still means the lower module speaks of the
higher one's types (mypy follows it), and a cycle through annotations still ties the two modules together.
``importlib.import_module("literal")`` counts as well; an import whose name is computed at run time cannot be
read and is not counted (the CLI's lazy loader imports its own ``assay.cli.*`` modules that way).

An import names the deepest module it reaches: ``from assay.model import tensors`` is an edge to
``assay.model.tensors``, ``from assay.scan import scan_model`` one to ``assay.scan`` (its ``__init__``).
Relative imports are resolved against the importing module. The parent packages Python initialises on the
way (``import a.b.c`` first runs ``a/b/__init__.py``) are not edges: every package's ``__init__`` re-exports its
own modules, and it is in the same layer as them.

Two rules are checked:

- **no cycle** among assay's modules (the failure prints the cycle, one ``file:line`` per import);
- **layers**: :data:`LAYERS` lists assay's packages (and top-level modules) from the bottom up. A module may
  import modules of its own package and of packages in lower layers only, never a package in the same layer
  (those are peers) or a higher one. Splitting a module into a package (``verdict.py`` -> ``verdict/``) keeps its
  layer: the layer belongs to the first name under ``assay``.

Each package sits in the lowest layer its imports allow; moving one up to silence this test is the wrong fix:
move the code the lower package needs down instead.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: assay's layers, bottom first; each entry names the first component under ``assay`` (``__init__`` is the
#: package's own ``assay/__init__.py``). Peers in one layer do not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    # base: import nothing of assay
    ("__init__", "errors", "severity", "formatting", "jsonable", "progress"),
    # schemas (errors); model: every reader of a model's bytes, one per format (zip, safetensors, GGUF, pickle,
    # card front matter); policy: the policy file; environment: versions and hardware (assay's __version__)
    ("schemas", "model", "policy", "environment"),
    # scan judges what the model readers read
    ("scan",),
    # manifest, signing (reads auto_map code through scan.code), lineage
    ("provenance",),
    # tasks, backends (hf loads only what scanned safe; hashes with provenance.manifest), runner, stats, probes
    ("evaluate",),
    # bench, cost, card, licences (bench drives evaluate's backends)
    ("deploy",),
    # stage results + policy -> verdict: above every stage whose results it reads (deploy's too, once they
    # travel as typed results)
    ("verdict",),
    # report renders saved documents (reads verdict's wording, evaluate.stats' metric directions)
    ("report",),
    # the orchestrator of every stage
    ("vet",),
    # the demo zoo and the registry both run vet
    ("demo", "hub"),
    ("cli",),
    ("__main__",),
)


@dataclass(frozen=True)
class Import:
    """One import statement's edge between two modules of the checked package."""

    source: str
    target: str
    file: str
    """The importing file, from the folder above ``src`` (``src/assay/model/tensors.py``)."""
    line: int

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def modules(src: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """Every module of ``package`` under ``src``: dotted name -> (file, is a package's ``__init__``)."""
    out: dict[str, tuple[Path, bool]] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_init = parts[-1] == "__init__"
        if is_init:
            parts.pop()
        out[".".join(parts)] = (path, is_init)
    return out


def _named(node: ast.AST, module: str, is_init: bool) -> list[tuple[str, Sequence[str]]]:
    """``(module named, names imported from it)`` for an import statement or a literal ``import_module`` call."""
    if isinstance(node, ast.Import):
        return [(alias.name, ()) for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if is_init else module.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
            named = ".".join([*base, node.module] if node.module else base)
        else:
            named = node.module or ""
        return [(named, [alias.name for alias in node.names])]
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
            and isinstance(node.args[0].value, str):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name == "import_module":
            return [(node.args[0].value, ())]
    return []


def imports(src: Path, package: str) -> list[Import]:
    """Every import between two modules of ``package`` (see the module docstring for what counts)."""
    mods = modules(src, package)

    def deepest(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    out: list[Import] = []
    for module, (path, is_init) in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            for named, names in _named(node, module, is_init):
                if named != package and not named.startswith(package + "."):
                    continue
                # ``from x import y`` reaches the module x.y if there is one, else x itself
                targets = {f"{named}.{n}" if f"{named}.{n}" in mods else deepest(named) for n in names} \
                    if names else {deepest(named)}
                for target in sorted(t for t in targets if t is not None):
                    if target != module:
                        out.append(Import(module, target, str(path.relative_to(src.parent)),
                                          getattr(node, "lineno", 0)))
    return out


def find_cycles(edges: Iterable[Import]) -> list[list[Import]]:
    """One cycle (as its imports, in order) for every group of modules that import each other in a circle."""
    graph: dict[str, dict[str, Import]] = {}
    for e in edges:
        graph.setdefault(e.source, {}).setdefault(e.target, e)
        graph.setdefault(e.target, {})
    # Tarjan's strongly connected components, iteratively
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    cycles = []
    for component in components:
        members = set(component)
        start = component[0]
        # shortest way round from start back to start, inside the component
        previous: dict[str, Import] = {}
        frontier = [start]
        while frontier and start not in previous:
            following = []
            for node in frontier:
                for target, edge in sorted(graph[node].items()):
                    if target in members and target not in previous:
                        previous[target] = edge
                        following.append(target)
            frontier = following
        path = [previous[start]]
        while path[0].source != start:
            path.insert(0, previous[path[0].source])
        cycles.append(path)
    return cycles


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_violations(edges: Iterable[Import], files: dict[str, str], layers: Sequence[Sequence[str]]) -> list[str]:
    """Each import that does not point down (or stays inside its own package), and each unplaced package.

    ``files`` maps every module to its file as shown.
    """
    level = {unit: i for i, layer in enumerate(layers) for unit in layer}
    unplaced = {_unit(m): f for m, f in sorted(files.items(), reverse=True) if _unit(m) not in level}
    problems = [f"{f}: {unit!r} is in no layer: add it to LAYERS in tests/test_layers.py (in the lowest layer "
                "its imports allow)" for unit, f in sorted(unplaced.items())]
    for e in edges:
        a, b = _unit(e.source), _unit(e.target)
        if a == b or a not in level or b not in level:
            continue
        if level[b] >= level[a]:
            how = "a peer in the same layer" if level[b] == level[a] else "a higher layer"
            problems.append(f"{e.where()}: {e.source} ({a}, layer {level[a]}) imports {e.target} ({b}, layer "
                            f"{level[b]}, {how}): assay imports downwards only; move what it needs down")
    return problems


def _check(src: Path, package: str, layers: Sequence[Sequence[str]]) -> tuple[list[Import], list[str], list[str]]:
    mods = modules(src, package)
    edges = imports(src, package)
    cycles = [" -> ".join([c[0].source] + [f"{e.target} ({e.where()})" for e in c]) for c in find_cycles(edges)]
    files = {m: str(p.relative_to(src.parent)) for m, (p, _) in mods.items()}
    return edges, cycles, layer_violations(edges, files, layers)


# The real package ---------------------------------------------------------------------------------------------

def test_assay_has_no_import_cycle() -> None:
    edges, cycles, _ = _check(SRC, "assay", LAYERS)
    # the checker really read the package: hundreds of imports, function-level ones among them
    assert len(edges) > 300
    assert any(e.source == "assay.cli.main" and e.target == "assay" for e in edges)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_assay_imports_downwards_only() -> None:
    _, _, problems = _check(SRC, "assay", LAYERS)
    assert not problems, "imports that do not point down:\n" + "\n".join(problems)


def test_every_layer_names_something_that_exists() -> None:
    units = {_unit(m) for m in modules(SRC, "assay")}
    declared = [u for layer in LAYERS for u in layer]
    assert len(declared) == len(set(declared)), "a package is in two layers"
    assert not set(declared) - units, f"LAYERS names what is not in src/assay: {set(declared) - units}"


def test_the_pickle_machine_is_the_one_below_scan_and_the_tensor_reader() -> None:
    """One reader of pickles, in ``model``: the scanner and the tensor reader both import it, scan's own copy is
    gone."""
    edges = imports(SRC, "assay")
    users = {e.source for e in edges if e.target == "assay.model.pickle_vm"}
    assert {"assay.model.tensors", "assay.scan.containers", "assay.scan.payload"} <= users
    assert "assay.scan.pickle_vm" not in modules(SRC, "assay")


# The checker itself, on a package planted with each mistake ------------------------------------------------------

def _plant(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


FAKE_LAYERS = (("__init__", "base"), ("low",), ("high",))


def test_checker_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    _plant(tmp_path, {
        "fake/__init__.py": "",
        "fake/base.py": "X = 1\n",
        "fake/low/__init__.py": "from fake.low.a import f\n",
        "fake/low/a.py": "from fake import base\n\ndef f():\n    from . import b\n    return b\n",
        "fake/low/b.py": "import fake.low.c\n",
        "fake/low/c.py": "from .a import f\n",
    })
    _, cycles, problems = _check(tmp_path, "fake", FAKE_LAYERS)
    assert problems == []
    d = tmp_path.name
    assert cycles == [f"fake.low.a -> fake.low.b ({d}/fake/low/a.py:4) -> fake.low.c ({d}/fake/low/b.py:1) "
                      f"-> fake.low.a ({d}/fake/low/c.py:1)"]


def test_checker_finds_upward_and_peer_imports_wherever_they_stand(tmp_path: Path) -> None:
    _plant(tmp_path, {
        "fake/__init__.py": "",
        "fake/base.py": "",
        "fake/low/__init__.py": "",
        "fake/low/a.py": ("from typing import TYPE_CHECKING\n"
                          "if TYPE_CHECKING:\n"
                          "    from fake.high.b import B\n"
                          "def g():\n"
                          "    import importlib\n"
                          "    return importlib.import_module('fake.high')\n"),
        "fake/high/__init__.py": "",
        "fake/high/b.py": "from ..low import a\nfrom .. import base\nclass B: ...\n",
        "fake/side.py": "from fake import base\n",
    })
    _, cycles, problems = _check(tmp_path, "fake", FAKE_LAYERS)
    d = tmp_path.name
    # an import only for annotations closes a cycle too
    assert cycles == [f"fake.high.b -> fake.low.a ({d}/fake/high/b.py:1) -> fake.high.b ({d}/fake/low/a.py:3)"]
    joined = "\n".join(problems)
    assert f"{d}/fake/side.py: 'side' is in no layer" in joined
    assert f"{d}/fake/low/a.py:3: fake.low.a (low, layer 1) imports fake.high.b (high, layer 2, a higher layer)" \
        in joined
    assert f"{d}/fake/low/a.py:6: fake.low.a (low, layer 1) imports fake.high (high, layer 2, a higher layer)" \
        in joined
    assert len(problems) == 3  # high -> low and high -> base point down


def test_checker_refuses_peers_in_one_layer(tmp_path: Path) -> None:
    _plant(tmp_path, {"fake/__init__.py": "", "fake/base.py": "import os\nfrom . import other\n",
                      "fake/other.py": ""})
    _, _, problems = _check(tmp_path, "fake", (("__init__", "base", "other"),))
    assert problems == [f"{tmp_path.name}/fake/base.py:2: fake.base (base, layer 0) imports fake.other (other, "
                        "layer 0, a peer in the same layer): assay imports downwards only; move what it needs down"]


def test_the_layers_drawn_in_the_design_are_the_declared_ones() -> None:
    """docs/DESIGN.md draws the layers (between ``<!-- layers -->`` markers): the drawing is this test's data."""
    design = (SRC.parent / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    drawing = design.split("<!-- layers -->", 1)[1].split("<!-- /layers -->", 1)[0]
    drawn: dict[int, tuple[str, ...]] = {}
    for line in drawing.splitlines():
        number, _, rest = line.strip().partition(" ")
        if number.isdigit():
            drawn[int(number)] = tuple(rest.strip().split("  ")[0].split(", "))
    assert drawn == dict(enumerate(LAYERS))
