"""Chat templates: parsed with Jinja2, never rendered, and *proved* safe over their syntax tree.

A template passes only when every way it can reach a Python object is shown harmless without running it:

- every attribute it reads (``message.content``) is a literal name that does not start with ``_`` and is not one
  of the reflective names Jinja's sandbox refuses (``mro``, ``gi_frame``, ``f_globals``, ...);
- every item it reads (``message['content']``, ``messages[loop.index0 - 1]``) has a key that is a literal string
  not starting with ``_`` or a number; a key the template *builds* (``'_' * 2``, ``'%s' % x``, ``a ~ b``,
  ``|join``, ``|replace``, a ``{% set %}...{% endset %}`` block, ``dict(__class__=1)|first``) is a finding, even
  when its value is harmless (literal pieces are folded first, so ``'con' ~ 'tent'`` passes and
  ``'__cla' ~ 'ss__'`` is named); a key read from the conversation data is a finding too, except as a lookup in a
  literal table (Hermes' ``basic_type_map[json_spec.type]``) or in the mapping whose keys the enclosing loop
  walks (``for k in m.keys()``: the lookup always hits). Pieces cut out of a literal (slices, characters,
  ``split``, ``trim``, ``reverse``) are built values, so ``'a__class__'[1:]`` cannot pass as a literal;
- every method it calls is on a short allowlist of string and dict methods stock templates use (``strip``,
  ``split``, ``startswith``, ``items``, ``get``, ...): ``format`` and ``format_map`` (which walk attributes inside
  a format string), list/dict mutators (which transformers' immutable sandbox refuses) and anything else are findings;
- every other call is to a macro of the template, ``caller``, or a global transformers defines
  (``raise_exception``, ``strftime_now``, ``namespace``, ``range``, ``dict``); ``lipsum``, ``cycler``,
  ``joiner`` and ``self`` are findings, as are ``import``, ``include`` and ``extends``;
- ``attr``, ``map``, ``selectattr``, ``sort(attribute=...)`` and the like take literal, non-underscore names.

This is stricter than transformers' ``ImmutableSandboxedEnvironment`` for every construction, so a template that
would only misbehave outside a sandbox (a plain ``jinja2.Environment``, as older llama-cpp-python used) is
flagged. The parser has the same extensions as transformers' chat-template environment (``loopcontrols`` and
``{% generation %}``).

    >>> fs = FileScan("tokenizer_config.json", ScanOptions())
    >>> scan_template_text("{{ ''.__class__.__mro__ }}", fs, where="chat_template")
    >>> fs.findings[0].rule
    'TEMPLATE-DUNDER'
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

from assay.scan.context import FileScan, at

#: Methods a template may call: read-only string and dict methods that stock templates use.
SAFE_METHODS = frozenset({
    "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith", "upper", "lower",
    "title", "capitalize", "replace", "count", "find", "rfind", "isdigit", "isalpha", "isalnum", "isspace",
    "items", "keys", "values", "get",
})
#: Methods whose result is a number or a boolean.
_SCALAR_METHODS = frozenset({"startswith", "endswith", "count", "find", "rfind", "isdigit", "isalpha", "isalnum",
                             "isspace"})
#: Attribute names Jinja's sandbox refuses besides ``__``-names (generator, coroutine and frame internals, ``mro``),
#: and Python 2 spellings of function internals.
REFLECTIVE = frozenset({"mro", "format", "format_map", "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code",
                        "cr_await", "ag_frame", "ag_code", "ag_await", "f_globals", "f_locals", "f_builtins",
                        "f_back", "f_code", "tb_frame", "tb_next", "co_code", "func_globals", "func_code",
                        "func_closure", "im_func", "im_self", "im_class", "environment", "undefined"})
#: Globals a chat template may call: transformers' own, and Jinja's harmless ones.
SAFE_GLOBALS = frozenset({"raise_exception", "strftime_now", "namespace", "range", "dict"})
#: Jinja globals that are objects whose attributes lead to Python internals.
OBJECT_GLOBALS = frozenset({"lipsum", "cycler", "joiner", "self"})
#: Filters that build a new string from template material: their result is never a safe key unless folded.
_BUILDING_FILTERS = frozenset({"join", "format", "replace", "center", "indent", "truncate", "wordwrap", "tojson",
                               "pprint", "urlencode", "urlize", "xmlattr", "filesizeformat", "striptags", "random",
                               "forceescape"})
#: Filters that take attribute names (first positional argument or ``attribute=``).
_ATTRIBUTE_FILTERS = {"selectattr": 0, "rejectattr": 0, "groupby": 0, "map": None, "sort": None, "sum": None,
                      "unique": None, "min": None, "max": None, "dictsort": None}
#: Attributes of ``loop`` that are numbers or booleans.
_LOOP_SCALARS = frozenset({"index", "index0", "revindex", "revindex0", "first", "last", "length", "depth", "depth0"})
#: Filters the chat-template environments define (Jinja's built-ins; transformers overrides ``tojson``).
_KNOWN_FILTERS: frozenset[str] | None = None
_KNOWN_TESTS: frozenset[str] | None = None


class Kind(enum.Flag):
    """Where a value can come from, as far as attribute and item access is concerned: a set of sources, joined by
    union, so the inference is monotone (a value that may be data *or* a built string is both)."""

    NUM = enum.auto()
    """Numbers, booleans and None."""
    SAFE = enum.auto()
    """Literal strings with no ``_`` at all: every piece cut out of them is as harmless."""
    LIT = enum.auto()
    """Whole literal strings with ``_`` inside but not first (``'tool_calls'``): fine as keys, not once cut."""
    DATA = enum.auto()
    """A value read from the caller's data (``messages``, ``tools``...) and not reshaped by the template."""
    BUILT = enum.auto()
    """A value the template builds at render time (string operations, ``{% set %}`` blocks, macro output)."""


_NONE = Kind(0)
#: Rounds of the fixed-point iteration before a template is reported as not verified.
_MAX_ROUNDS = 64
_KEYS = Kind.NUM | Kind.SAFE | Kind.LIT
"""Kinds that are always acceptable keys."""


def _join(kinds: Iterable[Kind]) -> Kind:
    out = _NONE
    for k in kinds:
        out |= k
    return out


def _cut(kind: Kind) -> Kind:
    """The kind of a piece of a value (a slice, a character, a stripped or split part)."""
    return (kind & ~Kind.LIT) | Kind.BUILT if Kind.LIT in kind else kind


#: Filters that keep a literal string whole (or make a number of it): their result stays SAFE.
_KEEPING_FILTERS = frozenset({"lower", "upper", "title", "capitalize", "string", "e", "escape", "safe", "default",
                              "d", "sort", "unique", "dictsort", "items", "length", "count", "int", "float", "abs",
                              "round", "wordcount", "sum", "min", "max", "selectattr", "rejectattr", "select",
                              "reject", "list"})
_NUMBER_FILTERS = frozenset({"length", "count", "int", "float", "abs", "round", "wordcount", "sum"})


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


#: Templates longer than this are not analysed (stock templates are under 20 KB; analysis takes about 2 s per
#: 100 KB on one core).
MAX_TEMPLATE_CHARS = 256 * 1024


def scan_template_text(text: str, fs: FileScan, *, where: str | None) -> None:
    """Parse one template and report every access to Python objects that cannot be proved harmless."""
    import jinja2

    if len(text) > MAX_TEMPLATE_CHARS:
        fs.unverified(f"{where or 'template'}: resource limit: a chat template of {len(text):,} characters is not "
                      f"analysed (limit {MAX_TEMPLATE_CHARS:,})")
        return

    try:
        tree = _environment().parse(text)
    except jinja2.TemplateSyntaxError as exc:
        fs.unverified(f"{where or 'template'}: does not parse as Jinja (line {exc.lineno}: {exc.message})")
        return
    except (RecursionError, MemoryError):
        fs.unverified(f"{where or 'template'}: too deeply nested to parse")
        return
    try:
        _Prover(fs, where, tree).run()
    except RecursionError:
        fs.unverified(f"{where or 'template'}: too deeply nested to analyse")


def _known_filters_and_tests() -> tuple[frozenset[str], frozenset[str]]:
    global _KNOWN_FILTERS, _KNOWN_TESTS
    if _KNOWN_FILTERS is None or _KNOWN_TESTS is None:
        from jinja2.filters import FILTERS
        from jinja2.tests import TESTS

        _KNOWN_FILTERS, _KNOWN_TESTS = frozenset(FILTERS), frozenset(TESTS)
    return _KNOWN_FILTERS, _KNOWN_TESTS


_NO_VALUE = object()


class _Prover:
    """Two passes: infer what every variable can hold (a fixed point over assignments), then check every access."""

    def __init__(self, fs: FileScan, where: str | None, tree: Any) -> None:
        from jinja2 import nodes

        self.n = nodes
        self.fs = fs
        self.where = where
        self.tree = tree
        self.filters, self.tests = _known_filters_and_tests()
        self.macros = {m.name for m in tree.find_all(nodes.Macro)}
        self.names: dict[str, Kind] = {}
        self.consts: dict[str, Any] = {}
        self.loop_items = _NONE
        self.assigned: set[str] = set()
        self.free: set[str] = set()
        self.tables: set[str] = set()
        self.loop_bindings: dict[str, int] = {}
        self.calls: dict[str, list[Any]] = {}
        self.memo: dict[int, Kind] = {}
        """Names bound once to a literal dict or list of safe values (a lookup table such as Hermes'
        ``basic_type_map``)."""

    def loc(self, node: Any) -> str | None:
        return at(self.where, f"line {getattr(node, 'lineno', '?')}")

    # ----------------------------------------------------------------------------------- pass 1: variable kinds

    def run(self) -> None:
        bindings = list(self._bindings())
        assigned = {name for name, _ in bindings}
        self.assigned = assigned
        for name in assigned:
            self.names[name] = _NONE
        # A name the template reads before (or without) assigning it may come from the caller: DATA at least.
        for name in self._free_names(assigned):
            self.names[name] = self.names.get(name, _NONE) | Kind.DATA
        n = self.n
        for call in self.tree.find_all(n.Call):
            if isinstance(call.node, n.Name):
                self.calls.setdefault(call.node.name, []).append(call)
        for _ in range(_MAX_ROUNDS):  # kinds only grow (a finite lattice): iterate to the fixed point
            changed = False
            for name, expr in bindings:
                kind = self.kind(expr) if expr is not None else Kind.BUILT
                current = self.names.get(name, _NONE)
                if kind | current != current:
                    self.names[name] = kind | current
                    self.memo.clear()
                    changed = True
            if not changed:
                break
        else:
            self.fs.unverified(f"{self.where or 'template'}: assignments depend on each other too deeply to "
                               "analyse")
            return
        # Constant strings assigned exactly once fold into later uses ({% set a = '__cla' %}).
        counts: dict[str, int] = {}
        for name, _ in bindings:
            counts[name] = counts.get(name, 0) + 1
        self.loop_bindings = counts
        for name, expr in bindings:
            if counts[name] == 1 and expr is not None and name not in self.free:
                value = self.value(expr)
                if value is not _NO_VALUE:
                    self.consts[name] = value
                if isinstance(expr, (self.n.Dict, self.n.List, self.n.Tuple)) and self.kind(expr) & ~_KEYS == _NONE:
                    self.tables.add(name)
        self.memo.clear()  # constants are known now
        self.loop_items = _join(self._element_kind(f.iter, 0) for f in self.tree.find_all(self.n.For))
        self.memo.clear()
        self.check_all()

    def _bindings(self) -> Iterable[tuple[str, Any]]:
        """``(name, expression it may hold)``; None for a value the template renders itself (endset, macro args)."""
        n = self.n
        for node in self.tree.find_all((n.Assign, n.AssignBlock, n.For, n.Macro, n.CallBlock, n.With)):
            if isinstance(node, n.Assign):
                yield from self._targets(node.target, node.node)
            elif isinstance(node, n.AssignBlock):
                yield from self._targets(node.target, None)
            elif isinstance(node, n.For):
                yield from self._targets(node.target, _Element(node.iter))
            elif isinstance(node, (n.Macro, n.CallBlock)):
                for arg in node.args:
                    yield arg.name, _MacroArg(node, arg.name)
            elif isinstance(node, n.With):
                for target, value in zip(node.targets, node.values, strict=False):
                    yield from self._targets(target, value)

    def _targets(self, target: Any, expr: Any) -> Iterable[tuple[str, Any]]:
        n = self.n
        if isinstance(target, n.Name):
            yield target.name, expr
        elif isinstance(target, n.Tuple):
            for item in target.items:
                yield from self._targets(item, _Element(expr) if expr is not None else None)
        elif isinstance(target, n.NSRef):  # {% set ns.x = ... %}: the namespace object holds it
            yield target.name, expr

    def _free_names(self, assigned: set[str]) -> set[str]:
        """Names the caller may give: read but never assigned, tested with ``is defined``, or read on a line
        before the template first assigns them."""
        n = self.n
        first_set: dict[str, int] = {}
        for node in self.tree.find_all((n.Assign, n.AssignBlock, n.For, n.With)):
            targets = [node.target] if not isinstance(node, n.With) else node.targets
            for target in targets:
                for name in target.find_all(n.Name) if not isinstance(target, n.Name) else [target]:
                    first_set[name.name] = min(first_set.get(name.name, 1 << 30), node.lineno)
        for node in self.tree.find_all((n.Macro, n.CallBlock)):
            for arg in node.args:
                first_set[arg.name] = 0  # parameters are bound before the body runs
        self.free = set()
        for node in self.tree.find_all(n.Name):
            if node.ctx != "load" or node.name in self.macros:
                continue
            if node.name not in assigned or node.lineno < first_set.get(node.name, 1 << 30):
                self.free.add(node.name)
        for test in self.tree.find_all(n.Test):
            if test.name in ("defined", "undefined") and isinstance(test.node, n.Name):
                self.free.add(test.node.name)
        return self.free

    # ----------------------------------------------------------------------------------- kinds and constant values

    def kind(self, node: Any, depth: int = 0) -> Kind:
        """What ``node`` evaluates to (see :class:`Kind`), memoised until a variable's kind changes."""
        if depth > 60:
            return Kind.BUILT
        key = id(node)
        cached = self.memo.get(key)
        if cached is None:
            cached = self.memo[key] = self._kind(node, depth)
        return cached

    def _kind(self, node: Any, depth: int) -> Kind:
        n = self.n
        if isinstance(node, _Element):
            return self._element_kind(node.node, depth)
        if isinstance(node, _MacroArg):
            return self._macro_arg_kind(node, depth)
        value = self.value(node)
        if value is not _NO_VALUE:
            return _kind_of_value(value)
        if isinstance(node, n.Const):
            return _kind_of_value(node.value)
        if isinstance(node, n.Name):
            if node.name in self.macros:
                return Kind.BUILT
            return self.names.get(node.name, Kind.DATA)
        if isinstance(node, n.Getattr):
            if isinstance(node.node, n.Name) and node.node.name == "loop":
                if node.attr in _LOOP_SCALARS:
                    return Kind.NUM
                return self.loop_items if node.attr in ("previtem", "nextitem") else Kind.BUILT
            return self.kind(node.node, depth + 1)
        if isinstance(node, n.Getitem):
            base = self.kind(node.node, depth + 1)
            key = self.value(node.arg)
            return base if isinstance(key, str) else _cut(base)  # an index or slice of a string is a piece
        if isinstance(node, (n.List, n.Tuple)):
            return _join(self.kind(x, depth + 1) for x in node.items) or Kind.NUM
        if isinstance(node, n.Dict):
            return _join(self.kind(p.key, depth + 1) | self.kind(p.value, depth + 1) for p in node.items) or Kind.NUM
        if isinstance(node, (n.Compare, n.Not, n.Test)):
            return Kind.NUM  # booleans
        if isinstance(node, (n.And, n.Or)):
            return self.kind(node.left, depth + 1) | self.kind(node.right, depth + 1)  # returns an operand
        if isinstance(node, n.CondExpr):
            return self.kind(node.expr1, depth + 1) | (self.kind(node.expr2, depth + 1) if node.expr2 is not None
                                                       else Kind.NUM)
        if isinstance(node, (n.Neg, n.Pos)):
            return Kind.NUM if self.kind(node.node, depth + 1) & ~Kind.NUM == _NONE else Kind.BUILT
        if isinstance(node, (n.Sub, n.Div, n.FloorDiv, n.Pow)):
            return Kind.NUM  # numbers (or an error)
        if isinstance(node, (n.Add, n.Mul, n.Mod)):
            if (self.kind(node.left, depth + 1) | self.kind(node.right, depth + 1)) & ~Kind.NUM == _NONE:
                return Kind.NUM
            return Kind.BUILT
        if isinstance(node, n.Concat):
            return Kind.BUILT
        if isinstance(node, n.Filter):
            return self._filter_kind(node, depth)
        if isinstance(node, n.Call):
            return self._call_kind(node, depth)
        if isinstance(node, n.Slice):
            return Kind.NUM
        return Kind.BUILT

    def _element_kind(self, iterable: Any, depth: int) -> Kind:
        """The kind of the items of ``iterable`` (a ``for`` loop, tuple unpacking)."""
        if iterable is None:
            return Kind.BUILT
        if isinstance(iterable, _Element):  # nested unpacking: items of items
            return _cut(self._element_kind(iterable.node, depth + 1))
        value = self.value(iterable)
        if isinstance(value, str):  # characters
            return Kind.BUILT if "_" in value else Kind.SAFE
        kind = self.kind(iterable, depth + 1)
        if self._is_table(iterable):
            return kind  # whole literals
        return _cut(kind)  # may be the characters of a string

    def _is_table(self, node: Any) -> bool:
        """A literal dict or list of whole literals and numbers (or a name bound once to one)."""
        n = self.n
        return (isinstance(node, (n.Dict, n.List, n.Tuple)) and self.kind(node) & ~_KEYS == _NONE) or \
            (isinstance(node, n.Name) and node.name in self.tables)

    def _macro_arg_kind(self, arg: _MacroArg, depth: int) -> Kind:
        n = self.n
        owner = arg.owner
        params = [a.name for a in owner.args]
        index = params.index(arg.name)
        kinds = [_NONE]
        defaults = owner.defaults
        first_default = len(params) - len(defaults)
        if index >= first_default:
            kinds.append(self.kind(defaults[index - first_default], depth + 1))
        if isinstance(owner, n.CallBlock):
            return Kind.BUILT  # caller(...) arguments come from the called macro: not traced
        for call in self.calls.get(owner.name, ()):
            if index < len(call.args):
                kinds.append(self.kind(call.args[index], depth + 1))
            for kw in call.kwargs:
                if kw.key == arg.name:
                    kinds.append(self.kind(kw.value, depth + 1))
            if call.dyn_args is not None or call.dyn_kwargs is not None:
                kinds.append(Kind.BUILT)
        return _join(kinds)

    def _filter_kind(self, node: Any, depth: int) -> Kind:
        base = self.kind(node.node, depth + 1) if node.node is not None else Kind.BUILT
        if node.name in _NUMBER_FILTERS:
            return Kind.NUM
        if node.name in _BUILDING_FILTERS or node.name == "attr":
            return Kind.BUILT
        args = [*node.args, *(kw.value for kw in node.kwargs)]
        kind = _join([base, *(self.kind(a, depth + 1) for a in args)])
        if node.name not in _KEEPING_FILTERS:
            return _cut(kind)  # first/last/trim/reverse/batch/slice... can cut a string
        if node.name == "list" and not self._is_table(node.node):
            return _cut(kind)  # a string becomes its characters
        return kind

    def _call_kind(self, node: Any, depth: int) -> Kind:
        n = self.n
        func = node.node
        args = [*node.args, *(kw.value for kw in node.kwargs)]
        if isinstance(func, n.Name):
            if func.name == "range":
                return Kind.NUM
            if func.name in ("dict", "namespace"):
                # dict(k=v) yields its keys when iterated; a namespace's names are only attribute names
                keys = [Kind.BUILT if kw.key.startswith("_") else _kind_of_value(kw.key) for kw in node.kwargs
                        if func.name == "dict"]
                return _join([Kind.NUM, *keys, *(self.kind(a, depth + 1) for a in args)])
            return Kind.BUILT  # macro output, caller(), strftime_now()
        if isinstance(func, n.Getattr) and func.attr in SAFE_METHODS:
            if func.attr in _SCALAR_METHODS:
                return Kind.NUM
            kind = _join([self.kind(func.node, depth + 1), *(self.kind(a, depth + 1) for a in args)])
            if func.attr == "replace" and args:
                return Kind.BUILT
            if func.attr in ("strip", "lstrip", "rstrip", "split", "rsplit", "splitlines"):
                return _cut(kind)  # pieces of a string
            return kind
        return Kind.BUILT

    def value(self, node: Any, depth: int = 0) -> Any:
        """The constant ``node`` always evaluates to (strings, numbers and lists of them), else ``_NO_VALUE``."""
        n = self.n
        if depth > 60 or node is None or isinstance(node, (_Element, _MacroArg)):
            return _NO_VALUE
        if isinstance(node, n.Const):
            return node.value if isinstance(node.value, (str, int, float, bool)) or node.value is None else _NO_VALUE
        if isinstance(node, n.Name):
            return self.consts.get(node.name, _NO_VALUE)
        if isinstance(node, (n.List, n.Tuple)):
            items = [self.value(x, depth + 1) for x in node.items]
            return _NO_VALUE if any(i is _NO_VALUE for i in items) else items
        if isinstance(node, (n.Concat, n.Add, n.Mul, n.Mod)):
            parts = node.nodes if isinstance(node, n.Concat) else [node.left, node.right]
            vals = [self.value(x, depth + 1) for x in parts]
            if any(v is _NO_VALUE for v in vals):
                return _NO_VALUE
            try:
                if isinstance(node, n.Concat):
                    return "".join(str(v) for v in vals)
                left, right = vals
                if isinstance(node, n.Mul) and isinstance(left, (str, list)) and isinstance(right, int):
                    return left * right if len(left) * right <= 4096 else _NO_VALUE
                if isinstance(node, n.Mul) and isinstance(right, (str, list)) and isinstance(left, int):
                    return right * left if len(right) * left <= 4096 else _NO_VALUE
                if isinstance(node, n.Add):
                    return left + right
                if isinstance(node, n.Mod) and isinstance(left, str):
                    return left % (tuple(right) if isinstance(right, list) else right)
                if isinstance(node, n.Mul):
                    return left * right
            except (TypeError, ValueError, OverflowError):
                return _NO_VALUE
            return _NO_VALUE
        if isinstance(node, n.Getitem):
            base = self.value(node.node, depth + 1)
            if base is _NO_VALUE or not isinstance(base, (str, list)):
                return _NO_VALUE
            if isinstance(node.arg, n.Slice):
                bounds = [None if x is None else self.value(x, depth + 1)
                          for x in (node.arg.start, node.arg.stop, node.arg.step)]
                if any(b is _NO_VALUE or not (b is None or isinstance(b, int)) for b in bounds) or bounds[2] == 0:
                    return _NO_VALUE
                return base[slice(*bounds)]
            key = self.value(node.arg, depth + 1)
            if isinstance(key, int) and -len(base) <= key < len(base):
                return base[key]
            return _NO_VALUE
        if isinstance(node, n.Filter):
            return self._fold_filter(node, depth)
        if isinstance(node, n.Call) and isinstance(node.node, n.Getattr):
            base = self.value(node.node.node, depth + 1)
            args = [self.value(a, depth + 1) for a in node.args]
            if base is _NO_VALUE or any(a is _NO_VALUE for a in args) or node.kwargs or not isinstance(base, str):
                return _NO_VALUE
            if node.node.attr in ("upper", "lower", "strip", "lstrip", "rstrip", "title", "capitalize", "replace",
                                  "join"):
                try:
                    return getattr(base, node.node.attr)(*args)
                except (TypeError, ValueError):
                    return _NO_VALUE
        if isinstance(node, n.Call) and isinstance(node.node, n.Name) and node.node.name == "dict" and not node.args:
            return [kw.key for kw in node.kwargs]  # the keys, which is what |first, |list and iteration yield
        return _NO_VALUE

    def _fold_filter(self, node: Any, depth: int) -> Any:
        base = self.value(node.node, depth + 1)
        if base is _NO_VALUE:
            return _NO_VALUE
        args = [self.value(a, depth + 1) for a in node.args]
        if any(a is _NO_VALUE for a in args):
            return _NO_VALUE
        name = node.name
        try:
            if name in ("lower", "upper", "title", "capitalize") and isinstance(base, str):
                return getattr(base, name)()
            if name == "trim" and isinstance(base, str):
                return base.strip(*args[:1])
            if name in ("string", "e", "escape", "safe"):
                return str(base) if not isinstance(base, list) else _NO_VALUE
            if name == "reverse":
                return base[::-1] if isinstance(base, (str, list)) else _NO_VALUE
            if name == "replace" and isinstance(base, str) and len(args) >= 2:
                return base.replace(str(args[0]), str(args[1]))
            if name == "join" and isinstance(base, (list, str)):
                return (str(args[0]) if args else "").join(str(x) for x in base)
            if name == "format" and isinstance(base, str) and not node.kwargs:
                return base % tuple(args)
            if name in ("first", "last") and isinstance(base, (list, str)) and base:
                return base[0] if name == "first" else base[-1]
            if name == "list":
                return list(base) if isinstance(base, (list, str)) else _NO_VALUE
        except (TypeError, ValueError, IndexError):
            return _NO_VALUE
        return _NO_VALUE

    # ----------------------------------------------------------------------------------- pass 2: every access

    def check_all(self) -> None:
        parents: dict[int, Any] = {}
        stack = [self.tree]
        while stack:
            node = stack.pop()
            for child in node.iter_child_nodes():
                parents[id(child)] = node
                stack.append(child)
            self.check(node, parents.get(id(node)))

    def check(self, node: Any, parent: Any) -> None:
        n = self.n
        if isinstance(node, n.Getattr):
            self.attribute(node, node.attr, "attribute", called=isinstance(parent, n.Call) and parent.node is node)
        elif isinstance(node, n.Getitem):
            self.item(node, parent)
        elif isinstance(node, n.Filter):
            self.filter(node)
        elif isinstance(node, n.FilterBlock):
            self.filter(node.filter)
        elif isinstance(node, n.Test):
            if node.name not in self.tests:
                self.fs.unverified(f"{self.loc(node)}: uses the test {node.name!r}, which no chat-template "
                                   "environment defines")
        elif isinstance(node, n.Call):
            self.call(node)
        elif isinstance(node, n.Name) and node.ctx == "load":
            self.name(node, parent)
        elif isinstance(node, (n.Import, n.FromImport, n.Include, n.Extends)):
            kind = type(node).__name__.lower()
            self.fs.add("TEMPLATE-IMPORT", self.loc(node), f"the template uses {{% {kind} %}}: a chat template must "
                        "be self-contained", kind)
        elif isinstance(node, n.Keyword) and node.key.startswith("_") and isinstance(parent, n.Call):
            self.fs.add("TEMPLATE-DUNDER", self.loc(node), f"keyword argument {node.key!r}: builds a private name "
                        "as a dictionary key", node.key)
        elif isinstance(node, n.Pair):
            key = self.value(node.key)
            if isinstance(key, str) and key.startswith("_"):
                self.fs.add("TEMPLATE-DUNDER", self.loc(node), f"dictionary key {key!r}: a private name held for "
                            "later access", key)
        elif isinstance(node, n.ExtensionAttribute):
            if node.name != "_noop":
                self.fs.add("TEMPLATE-CALL", self.loc(node), "the template calls an extension method",
                            node.name)

    def name(self, node: Any, parent: Any) -> None:
        n = self.n
        called = isinstance(parent, n.Call) and parent.node is node
        if node.name in OBJECT_GLOBALS and node.name not in self.assigned:
            self.fs.add("TEMPLATE-GLOBAL", self.loc(node), f"uses the Jinja global {node.name!r}, a known way to "
                        "reach Python objects from a template", node.name)
        elif node.name in ("namespace", "range", "dict") and not called and node.name not in self.assigned:
            self.fs.add("TEMPLATE-GLOBAL", self.loc(node), f"uses {node.name!r} other than by calling it (a way to "
                        "reach its class)", node.name)

    def attribute(self, node: Any, name: str, how: str, *, called: bool = False) -> None:
        n = self.n
        if called and isinstance(node, n.Getattr) and isinstance(node.node, n.Name) and node.node.name == "loop" \
                and name in ("cycle", "changed"):
            return
        if name.startswith("_"):
            self.fs.add("TEMPLATE-DUNDER", self.loc(node), f"{how} access to {name!r}: reaches Python internals",
                        name)
        elif name in ("format", "format_map"):
            self.fs.add("TEMPLATE-METHOD", self.loc(node), f"{how} {name!r}: format strings walk attributes and "
                        "items (transformers' sandbox intercepts them, a plain environment does not)", name)
        elif name in REFLECTIVE:
            self.fs.add("TEMPLATE-REFLECTION", self.loc(node), f"{how} access to {name!r}: reflection on Python "
                        "objects", name)
        elif called and name not in SAFE_METHODS:
            self.fs.add("TEMPLATE-METHOD", self.loc(node), f"calls the method {name!r}, which is not on the "
                        f"allowlist of read-only string and dict methods ({', '.join(sorted(SAFE_METHODS))})", name)

    def item(self, node: Any, parent: Any = None) -> None:
        n = self.n
        if isinstance(node.arg, n.Slice):
            for bound in (node.arg.start, node.arg.stop, node.arg.step):
                if bound is not None and self.kind(bound) & ~Kind.NUM != _NONE:
                    self.fs.add("TEMPLATE-COMPUTED-NAME", self.loc(node), "a slice bound is built at render time",
                                type(bound).__name__)
            return
        value = self.value(node.arg)
        if isinstance(value, str):
            if value.startswith("_") or value in REFLECTIVE:
                self.attribute(node, value, "item")
            return
        if value is not _NO_VALUE:
            return  # a number or None
        kind = self.kind(node.arg)
        if kind & ~_KEYS == _NONE:
            return  # a number, or a whole literal string that does not start with "_"
        if Kind.BUILT in kind:
            self.fs.add("TEMPLATE-COMPUTED-NAME", self.loc(node), "item access with a key the template builds at "
                        "render time: Jinja falls back to an attribute of that name, so a built key can reach "
                        "Python internals", _short(node.arg))
        elif not self._table_lookup(node, parent):
            self.fs.add("TEMPLATE-DATA-KEY", self.loc(node), "item access with a key taken from the conversation "
                        "data: in a plain Jinja environment the data can name Python internals (accepted only "
                        "in a literal lookup table, or in the mapping whose keys the loop walks)", _short(node.arg))

    def _table_lookup(self, node: Any, parent: Any) -> bool:
        """A data key accepted: ``table[data]`` on a literal table (a miss falls back to an attribute of the
        table, from which only literal names can go on), or ``mapping[k]`` inside a loop over that same
        mapping's keys (``for k in m.keys()``, ``for k, v in m|items``), where the lookup always hits."""
        if self._is_table(node.node):
            return True
        n = self.n
        if not isinstance(node.arg, n.Name):
            return False
        for loop in self.tree.find_all(n.For):
            source = _mapping_keys_source(loop, node.arg.name, n)
            if source is not None and _same_expr(source, node.node, n) and \
                    self.loop_bindings.get(node.arg.name, 0) == 1:
                return True
        return False

    def filter(self, node: Any) -> None:
        n = self.n
        name = node.name
        if name not in self.filters:
            self.fs.unverified(f"{self.loc(node)}: uses the filter {name!r}, which no chat-template environment "
                               "defines")
            return
        if name == "attr":
            self._attribute_argument(node, node.args[0] if node.args else None, "attr filter")
        elif name in ("map", "select", "reject") and node.args:
            first = self.value(node.args[0])
            if name == "map" and first == "attr":
                self._attribute_argument(node, node.args[1] if len(node.args) > 1 else None, "map('attr')")
            elif not isinstance(first, str):
                self.fs.add("TEMPLATE-ATTR-FILTER", self.loc(node), f"{name}() applies a filter or test whose "
                            "name is built at render time", _short(node.args[0]))
            elif name == "map" and first not in self.filters:
                self.fs.unverified(f"{self.loc(node)}: map() applies the filter {first!r}, which no chat-template "
                                   "environment defines")
        if name in _ATTRIBUTE_FILTERS:
            position = _ATTRIBUTE_FILTERS[name]
            if position is not None and len(node.args) > position:
                self._attribute_argument(node, node.args[position], f"{name} filter", dotted=True)
            for kw in node.kwargs:
                if kw.key == "attribute":
                    self._attribute_argument(node, kw.value, f"{name} filter", dotted=True)
        if name == "format" and isinstance(self.value(node.node), str):
            import re

            fmt = self.value(node.node)
            if re.search(r"\{[^}]*[.\[]", fmt) and re.search(r"__", fmt):
                self.fs.add("TEMPLATE-REFLECTION", self.loc(node), "format string names Python internals",
                            fmt[:80])
        del n

    def _attribute_argument(self, node: Any, arg: Any, how: str, *, dotted: bool = False) -> None:
        value = self.value(arg) if arg is not None else _NO_VALUE
        if isinstance(value, int) and not isinstance(value, bool) and dotted:
            return  # an index (groupby(0), sort(attribute=1))
        if not isinstance(value, str):
            self.fs.add("TEMPLATE-ATTR-FILTER", self.loc(node), f"the {how} takes a name computed at render time",
                        _short(arg) if arg is not None else "no name")
            return
        for part in value.split(".") if dotted else [value]:
            self.attribute(node, part, how)

    def call(self, node: Any) -> None:
        n = self.n
        func = node.node
        if isinstance(func, n.Name):
            name = func.name
            if name in self.macros or name == "caller" or name in SAFE_GLOBALS or name in OBJECT_GLOBALS:
                return  # OBJECT_GLOBALS are reported where the name is read
            if name == "loop":
                return  # recursive loops: loop(children)
            self.fs.add("TEMPLATE-CALL", self.loc(node), f"calls {name!r}, which is neither a macro of the template "
                        "nor a global transformers defines", name)
        elif isinstance(func, n.Getattr):
            if isinstance(func.node, n.Name) and func.node.name == "loop" and func.attr in ("cycle", "changed"):
                return
            # the method name itself is checked with the Getattr node
        elif isinstance(func, n.ExtensionAttribute):
            return
        else:
            self.fs.add("TEMPLATE-CALL", self.loc(node), "calls the result of an expression (not a named macro, "
                        "global or allowlisted method)", _short(func))


class _Element:
    """The elements of an iterable expression (a ``for`` target, a tuple unpacking)."""

    def __init__(self, node: Any) -> None:
        self.node = node


class _MacroArg:
    """A macro (or call block) parameter: whatever its callers pass, or its default."""

    def __init__(self, owner: Any, name: str) -> None:
        self.owner = owner
        self.name = name


def _kind_of_value(value: Any) -> Kind:
    if isinstance(value, str):
        return Kind.BUILT if value.startswith("_") else Kind.LIT if "_" in value else Kind.SAFE
    if isinstance(value, list):
        return _join(_kind_of_value(v) for v in value) or Kind.NUM
    return Kind.NUM


def _short(node: Any) -> str:
    try:
        from jinja2 import nodes

        if isinstance(node, nodes.Const):
            return repr(node.value)[:80]
        if isinstance(node, nodes.Name):
            return node.name
    except ImportError:  # pragma: no cover - jinja2 is a core dependency
        pass
    return type(node).__name__


def _mapping_keys_source(loop: Any, name: str, n: Any) -> Any:
    """The mapping whose keys ``loop`` binds to ``name`` (``for name in m.keys()|reject(...)``,
    ``for name, v in m|items`` or ``m.items()`` or ``m|dictsort``), else None."""
    target, it = loop.target, loop.iter
    while isinstance(it, n.Filter) and it.name in ("reject", "select", "list", "sort", "unique"):
        it = it.node
    if isinstance(target, n.Name) and target.name == name:
        if isinstance(it, n.Call) and isinstance(it.node, n.Getattr) and it.node.attr == "keys" and not it.args:
            return it.node.node
        return None
    if isinstance(target, n.Tuple) and target.items and isinstance(target.items[0], n.Name) \
            and target.items[0].name == name:
        if isinstance(it, n.Filter) and it.name in ("items", "dictsort"):
            return it.node
        if isinstance(it, n.Call) and isinstance(it.node, n.Getattr) and it.node.attr == "items" and not it.args:
            return it.node.node
    return None


def _same_expr(a: Any, b: Any, n: Any) -> bool:
    """Two expressions that name the same value: equal chains of names, literal attributes and literal keys."""
    if isinstance(a, n.Name) and isinstance(b, n.Name):
        return bool(a.name == b.name)
    if isinstance(a, n.Getattr) and isinstance(b, n.Getattr):
        return bool(a.attr == b.attr) and _same_expr(a.node, b.node, n)
    if isinstance(a, n.Getitem) and isinstance(b, n.Getitem):
        return isinstance(a.arg, n.Const) and isinstance(b.arg, n.Const) and bool(a.arg.value == b.arg.value) \
            and _same_expr(a.node, b.node, n)
    return False
