"""Chat templates: parsed with Jinja2, never rendered, and their syntax tree walked for escapes.

Template injection has given remote code execution in real loaders: a template reaches ``__class__``,
``__globals__`` or ``__subclasses__`` through attribute or item access, the ``attr`` filter, a Jinja global
(``lipsum``, ``cycler``, ``joiner``, ``namespace``) or ``self``, or pulls in other templates. String pieces joined
with ``~`` or ``+``, ``set`` variables, ``reverse`` and slices are folded, so ``'__cla' ~ 'ss__'`` is seen as
``'__class__'``. The parser has the same extensions as transformers' chat-template environment
(``loopcontrols`` and ``{% generation %}``), so stock templates parse.

    >>> fs = FileScan("tokenizer_config.json", ScanOptions())
    >>> scan_template_text("{{ ''.__class__.__mro__ }}", fs, where="chat_template")
    >>> fs.findings[0].rule
    'TEMPLATE-DUNDER'
"""

from __future__ import annotations

import re
from typing import Any

from assay.scan.context import FileScan, at

_DUNDER_TEXT = re.compile(r"__[A-Za-z][A-Za-z0-9_]*__")
_REFLECTIVE = frozenset({"mro", "format_map", "gi_frame", "gi_code", "f_globals", "f_locals", "f_back",
                         "f_builtins", "tb_frame", "cr_frame", "ag_frame", "func_globals", "func_code", "im_func",
                         "im_self", "co_code", "environment", "undefined"})
_OBJECT_GLOBALS = frozenset({"lipsum", "cycler", "joiner", "self"})
_ATTRIBUTE_FILTERS = frozenset({"map", "selectattr", "rejectattr", "sort", "groupby", "sum", "unique", "min", "max",
                                "dictsort"})


def _environment() -> Any:
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension

    class _Generation(Extension):
        """Parses ``{% generation %}...{% endgeneration %}`` as transformers' template environment does."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_noop"), [], [], body).set_lineno(lineno)

        def _noop(self, caller: Any) -> Any:  # pragma: no cover - never rendered
            return caller()

    return jinja2.Environment(extensions=[_Generation, "jinja2.ext.loopcontrols"])


def scan_chat_template_value(value: Any, fs: FileScan, *, where: str | None) -> None:
    """A ``chat_template`` value from ``tokenizer_config.json``: a string or a list of ``{name, template}``."""
    if value is None:
        return
    if isinstance(value, str):
        scan_template_text(value, fs, where=where)
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict) and isinstance(item.get("template"), str):
                scan_template_text(item["template"], fs, where=at(where, f"[{item.get('name', i)}]"))
            else:
                fs.unverified(f"{where}: chat_template entry #{i} is not a {{name, template}} object")
        return
    fs.unverified(f"{where}: chat_template is neither a string nor a list")


def scan_template_text(text: str, fs: FileScan, *, where: str | None) -> None:
    """Parse one template and report what in it can reach Python objects."""
    import jinja2

    try:
        tree = _environment().parse(text)
    except jinja2.TemplateSyntaxError as exc:
        fs.unverified(f"{where or 'template'}: does not parse as Jinja (line {exc.lineno}: {exc.message})")
        return
    except (RecursionError, MemoryError):
        fs.unverified(f"{where or 'template'}: too deeply nested to parse")
        return
    _Walker(fs, where).run(tree)


class _Walker:
    def __init__(self, fs: FileScan, where: str | None) -> None:
        from jinja2 import nodes

        self.n = nodes
        self.fs = fs
        self.where = where
        self.sets: dict[str, str] = {}

    def loc(self, node: Any) -> str | None:
        return at(self.where, f"line {getattr(node, 'lineno', '?')}")

    def run(self, tree: Any) -> None:
        n = self.n
        # constant string variables ({% set x = '__cla' ~ 'ss__' %}), so later uses fold
        for assign in tree.find_all(n.Assign):
            if isinstance(assign.target, n.Name):
                folded = self.fold(assign.node)
                if folded is not None:
                    self.sets[assign.target.name] = folded
        self.visit(tree, None)

    def visit(self, node: Any, parent: Any) -> None:
        stack = [(node, parent)]
        while stack:
            cur, par = stack.pop()
            self.check(cur, par)
            for child in cur.iter_child_nodes():
                stack.append((child, cur))

    def check(self, node: Any, parent: Any) -> None:
        n = self.n
        if isinstance(node, n.Getattr):
            self.name_access(node, node.attr, "attribute")
        elif isinstance(node, n.Getitem):
            key = self.fold(node.arg)
            if key is not None:
                self.name_access(node, key, "item")
        elif isinstance(node, n.Filter):
            self.filter(node)
        elif isinstance(node, n.Name) and node.ctx == "load":
            if node.name in _OBJECT_GLOBALS:
                self.fs.add("TEMPLATE-GLOBAL", self.loc(node), f"uses the Jinja global {node.name!r}, a known way "
                            "to reach Python objects from a template", node.name)
            elif node.name == "namespace" and not (isinstance(parent, n.Call) and parent.node is node):
                self.fs.add("TEMPLATE-GLOBAL", self.loc(node), "uses 'namespace' other than by calling it "
                            "(a way to reach its class)", "namespace")
        elif isinstance(node, (n.Import, n.FromImport, n.Include, n.Extends)):
            kind = type(node).__name__.lower()
            self.fs.add("TEMPLATE-IMPORT", self.loc(node), f"the template uses {{% {kind} %}}: a chat template must "
                        "be self-contained", kind)
        elif isinstance(node, n.Const) and isinstance(node.value, str):
            m = _DUNDER_TEXT.search(node.value)
            if m:
                self.fs.add("TEMPLATE-DUNDER", self.loc(node), f"a string names the Python internal {m.group(0)!r} "
                            "(format-string and attribute tricks)", m.group(0))
        if isinstance(node, (n.Concat, n.Add)) and not isinstance(parent, (n.Concat, n.Add)):
            folded = self.fold(node)
            if folded is not None:
                m = _DUNDER_TEXT.search(folded)
                if m:
                    self.fs.add("TEMPLATE-DUNDER", self.loc(node), f"strings joined at render time spell "
                                f"{m.group(0)!r}", folded[:80])

    def name_access(self, node: Any, name: str, kind: str) -> None:
        if name.startswith("_"):
            self.fs.add("TEMPLATE-DUNDER", self.loc(node), f"{kind} access to {name!r}: reaches Python internals",
                        name)
        elif name in _REFLECTIVE:
            self.fs.add("TEMPLATE-REFLECTION", self.loc(node), f"{kind} access to {name!r}: reflection on Python "
                        "objects", name)

    def filter(self, node: Any) -> None:
        n = self.n
        if node.name == "attr":
            arg = node.args[0] if node.args else None
            folded = self.fold(arg) if arg is not None else None
            if folded is None or not isinstance(arg, n.Const):
                self.fs.add("TEMPLATE-ATTR-FILTER", self.loc(node), "the attr filter takes a name computed at render "
                            "time", folded or type(arg).__name__)
            if folded is not None:
                self.name_access(node, folded, "attr filter")
        elif node.name in _ATTRIBUTE_FILTERS:
            for kw in node.kwargs:
                if kw.key == "attribute":
                    folded = self.fold(kw.value)
                    if folded is not None:
                        for part in folded.split("."):
                            self.name_access(node, part, f"{node.name} filter")
            if node.name == "map" and node.args:
                first = self.fold(node.args[0])
                if first == "attr":
                    self.fs.add("TEMPLATE-ATTR-FILTER", self.loc(node), "map('attr', ...) applies the attr filter",
                                "map('attr')")
        elif node.name == "format":
            fmt = self.fold(node.node)
            if fmt is not None and re.search(r"\{[^}]*[.\[]", fmt):
                self.fs.add("TEMPLATE-REFLECTION", self.loc(node), "format string reaches attributes or items",
                            fmt[:80])

    def fold(self, node: Any, depth: int = 0) -> str | None:
        """The constant string an expression always evaluates to, if it can be known without rendering."""
        n = self.n
        if depth > 50 or node is None:
            return None
        if isinstance(node, n.Const):
            return node.value if isinstance(node.value, str) else None
        if isinstance(node, n.Name):
            return self.sets.get(node.name)
        if isinstance(node, n.Concat):
            parts = [self.fold(x, depth + 1) for x in node.nodes]
            return "".join(p for p in parts if p is not None) if all(p is not None for p in parts) else None
        if isinstance(node, n.Add):
            left, right = self.fold(node.left, depth + 1), self.fold(node.right, depth + 1)
            return left + right if left is not None and right is not None else None
        if isinstance(node, n.Getitem) and isinstance(node.arg, n.Slice):
            base = self.fold(node.node, depth + 1)
            sl = node.arg
            vals = [None if x is None else (x.value if isinstance(x, n.Const) and isinstance(x.value, int) else "?")
                    for x in (sl.start, sl.stop, sl.step)]
            if base is None or "?" in vals or vals[2] == 0:
                return None
            return base[slice(*vals)]
        if isinstance(node, n.Filter):
            base = self.fold(node.node, depth + 1) if node.node is not None else None
            if node.name == "join" and isinstance(node.node, (n.List, n.Tuple)):
                items = [self.fold(x, depth + 1) for x in node.node.items]
                sep = self.fold(node.args[0], depth + 1) if node.args else ""
                if all(i is not None for i in items) and sep is not None:
                    return sep.join(i for i in items if i is not None)
                return None
            if base is None:
                return None
            if node.name == "reverse":
                return base[::-1]
            if node.name in ("lower", "upper", "trim", "string", "e", "escape", "title", "capitalize"):
                return {"lower": base.lower(), "upper": base.upper(), "trim": base.strip(),
                        "title": base.title(), "capitalize": base.capitalize()}.get(node.name, base)
            if node.name == "replace" and len(node.args) >= 2:
                a, b = self.fold(node.args[0], depth + 1), self.fold(node.args[1], depth + 1)
                return base.replace(a, b) if a is not None and b is not None else None
            if node.name == "format":
                return None
        return None
