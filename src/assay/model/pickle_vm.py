"""A symbolic pickle machine: what a pickle would import and call, found without unpickling it.

``pickletools.genops`` decodes opcodes and their arguments; this module simulates the stack and the memo for
every opcode of protocols 0-5, resolves the names of ``GLOBAL``, ``STACK_GLOBAL`` and ``INST``, treats
``REDUCE``, ``BUILD``, ``INST``, ``OBJ``, ``NEWOBJ`` and ``NEWOBJ_EX`` as calls, and checks each global against
the default-deny allowlist (:mod:`assay.model.pickle_allowlist`). Several pickles stacked in one stream are read
one after the other; a stream that breaks keeps what was found before the break.

This is the one reader of pickles: the scanner judges them (:mod:`assay.scan.containers`, :mod:`assay.scan.payload`)
and the tensor reader lists a torch archive's tensors (:mod:`assay.model.tensors`) from the same machine. It
lives in ``model`` so that both can import it; it reports through :class:`PickleReport`, which the scanner's
:class:`~assay.scan.context.FileScan` implements (findings are named by their scan rule id).

    >>> from assay.scan.context import FileScan, ScanOptions   # the scanner's report; any PickleReport will do
    >>> fs = FileScan("x.pkl", ScanOptions())
    >>> scan_pickle_stream(io.BytesIO(b"cos\\nsystem\\n(S'true'\\ntR."), fs, where=None)
    >>> [f.rule for f in fs.findings]
    ['PICKLE-GLOBAL-DANGEROUS']
"""

from __future__ import annotations

import _compat_pickle
import hashlib
import io
import pickletools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, Protocol, cast

from assay.model.pickle_allowlist import NESTED_LOADERS, NUMERIC_DTYPE_KINDS, danger_of, is_allowed
from assay.model.problems import at

#: The first pickle of a legacy (non-zip) ``torch.save`` file holds this number.
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


# Where the machine reports ---------------------------------------------------------------------------------------

class PickleOptions(Protocol):
    """What the machine reads of the scan options."""

    @property
    def allow_globals(self) -> frozenset[str]:
        """Extra globals (exact ``module.qualname``) to accept."""
        ...


class PickleReport(Protocol):
    """Where the machine reports what a pickle does (the scanner's :class:`~assay.scan.context.FileScan`).

    ``add`` takes a scan rule id (``PICKLE-GLOBAL``, ...); the counters bound the work per scanned file.
    """

    pickle_ops: int
    """Opcodes run so far in this file (bounded by :data:`MAX_PICKLE_OPS`)."""
    nested_seen: set[bytes]
    """Digests of nested byte strings already scanned in this file."""

    @property
    def options(self) -> PickleOptions:
        """The allowlist additions."""
        ...

    def add(self, rule: str, location: str | None, message: str, evidence: str | None = None) -> None:
        """Record a finding of ``rule``."""

    def unverified(self, reason: str) -> None:
        """Record that part of the file could not be analysed."""


@dataclass(frozen=True)
class _Allow:
    allow_globals: frozenset[str] = frozenset()


@dataclass
class DiscardReport:
    """A :class:`PickleReport` that keeps nothing: for reading what a pickle holds, not judging it."""

    options: _Allow = field(default_factory=_Allow)
    pickle_ops: int = 0
    nested_seen: set[bytes] = field(default_factory=set)

    def add(self, rule: str, location: str | None, message: str, evidence: str | None = None) -> None:
        """Dropped."""

    def unverified(self, reason: str) -> None:
        """Dropped."""


# Symbolic values ------------------------------------------------------------------------------------------------

@dataclass(eq=False)
class Global:
    """A global the pickle names (``module.qualname``); ``computed`` if its name was built at load time."""

    full: str
    pos: int
    computed: bool = False


@dataclass(eq=False)
class Call:
    """The result of calling ``func`` with ``args`` (REDUCE, NEWOBJ, INST, OBJ, ...)."""

    func: Any
    args: Any
    pos: int
    pairs: list[tuple[Any, Any]] = field(default_factory=list)
    """Items set on the result afterwards (``SETITEM(S)``: an ``OrderedDict`` state dict is filled this way)."""
    state: Any = None
    """The ``BUILD`` state applied to the result, if any."""


@dataclass(eq=False)
class Persistent:
    """A persistent reference (torch storages): resolved by the loader's ``persistent_load``."""

    pid: Any


@dataclass(eq=False)
class Opaque:
    """A value the machine cannot know (an out-of-band buffer, an extension code)."""

    what: str


@dataclass(eq=False)
class SymList:
    """A list under construction."""

    items: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class SymDict:
    """A dict under construction (pairs, so symbolic keys need no hashing)."""

    pairs: list[tuple[Any, Any]] = field(default_factory=list)


@dataclass(eq=False)
class SymSet:
    """A set or frozenset."""

    items: list[Any] = field(default_factory=list)


class _Mark:
    __slots__ = ()


MARK = _Mark()


class PickleFormatError(Exception):
    """The stream is not a well-formed pickle at ``pos``."""

    def __init__(self, message: str, pos: int | None) -> None:
        super().__init__(message)
        self.pos = pos


class PickleResourceLimit(Exception):
    """The file's pickles run more opcodes than :data:`MAX_PICKLE_OPS`."""

    def __init__(self, message: str, pos: int | None) -> None:
        super().__init__(message)
        self.pos = pos


#: Opcodes run per scanned file, over all its pickles (about 4 s of work; a torch data.pkl of a 70B model runs
#: well under a million).
MAX_PICKLE_OPS = 10_000_000


@dataclass
class PickleResult:
    """What one pickle in a stream did."""

    value: Any
    """The symbolic value it returns."""
    calls: int
    """How many calls it makes."""
    persistent_ids: list[Any]
    """Every persistent id it references (torch storages)."""
    start: int
    end: int


# The machine -----------------------------------------------------------------------------------------------------

class PickleMachine:
    """Runs one pickle symbolically (:meth:`run`), reporting into ``fs``."""

    def __init__(self, fs: PickleReport, where: str | None, nested: Callable[[bytes, str], None] | None) -> None:
        self.fs = fs
        self.where = where
        self.nested = nested
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.proto = 0
        self.calls = 0
        self.persistent: list[Any] = []

    # helpers
    def loc(self, pos: int) -> str | None:
        return at(self.where, f"byte {pos}")

    def pop(self, pos: int) -> Any:
        if not self.stack:
            raise PickleFormatError("stack underflow", pos)
        return self.stack.pop()

    def pop_mark(self, pos: int) -> list[Any]:
        if not self.metastack:
            raise PickleFormatError("MARK expected", pos)
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def top(self, pos: int) -> Any:
        if not self.stack:
            raise PickleFormatError("stack underflow", pos)
        return self.stack[-1]

    # globals and calls
    def global_(self, module: Any, name: Any, pos: int, op: str) -> Global:
        if not isinstance(module, str) or not isinstance(name, str):
            shown = f"{_show(module)}.{_show(name)}"
            self.fs.add("PICKLE-COMPUTED-GLOBAL", self.loc(pos),
                        f"{op} takes a module or name computed at load time ({shown}): a way to hide what is "
                        "imported", shown)
            return Global(shown, pos, computed=True)
        if self.proto < 3:  # pickle maps Python 2 names, as the stdlib unpickler does with fix_imports
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        full = f"{module}.{name}"
        if not is_allowed(full, self.fs.options.allow_globals):
            danger = danger_of(full)
            if full in NESTED_LOADERS:
                pass  # reported at the call, with what its argument holds
            elif danger:
                self.fs.add("PICKLE-GLOBAL-DANGEROUS", self.loc(pos), f"references {full}: {danger}", full)
            else:
                self.fs.add("PICKLE-GLOBAL", self.loc(pos),
                            f"references {full}, which is not on the allowlist of what honest checkpoints need",
                            full)
        return Global(full, pos)

    def call(self, func: Any, args: Any, pos: int, op: str, kwargs: Any = None) -> Call:
        self.calls += 1
        if isinstance(func, Global):
            if not func.computed:
                self._check_args(func, args, pos)
        elif isinstance(func, Call):
            self.fs.add("PICKLE-CALL", self.loc(pos),
                        f"{op} calls the result of another call ({_show(func)}): a way to reach hidden objects",
                        _show(func))
        else:
            self.fs.add("PICKLE-CALL", self.loc(pos), f"{op} calls a value that is not a named global "
                        f"({_show(func)})", _show(func))
        return Call(func, args if kwargs is None else (args, kwargs), pos)

    def _check_args(self, func: Global, args: Any, pos: int) -> None:
        full = func.full
        if full in NESTED_LOADERS:
            # Allowing the loader (--allow-global) silences this finding, never the scan of what it loads.
            report = not is_allowed(full, self.fs.options.allow_globals)
            blobs, complete = _constant_bytes(args)
            if not complete:
                self.fs.unverified(f"resource limit: {at(self.loc(pos), None)}: the argument of {full} has more than "
                                   f"{MAX_ARG_NODES:,} parts; not all of them were scanned")
            if blobs:
                if report:
                    self.fs.add("PICKLE-NESTED-LOADER", self.loc(pos),
                                f"calls {full} on {len(blobs)} embedded byte string(s); scanned below", full)
                if self.nested is not None:
                    for i, blob in enumerate(blobs):
                        digest = hashlib.sha256(blob).digest()
                        if digest in self.fs.nested_seen:  # the same bytes loaded again: scanned once per file
                            continue
                        self.fs.nested_seen.add(digest)
                        self.nested(blob, at(self.loc(pos), f"nested bytes #{i + 1} of {full}") or "")
            elif report:
                self.fs.add("PICKLE-NESTED-LOADER", self.loc(pos),
                            f"calls {full} on an argument computed at load time, which cannot be scanned", full)
            else:
                self.fs.unverified(f"{at(self.loc(pos), None)}: {full} loads bytes computed at load time")
            return
        if full in ("numpy.dtype",):
            first = _first_arg(args)
            kind = first.lstrip("<>|=")[:1] if isinstance(first, str) else None
            if kind is None or kind not in NUMERIC_DTYPE_KINDS:
                self.fs.add("PICKLE-ARGS", self.loc(pos),
                            f"numpy.dtype({_show(first)}): only numeric dtypes are accepted (object and structured "
                            "dtypes can carry Python objects)", _show(first))
        elif full == "_codecs.encode":
            items = args if isinstance(args, tuple) else ()
            ok = (len(items) in (1, 2) and isinstance(items[0], str)
                  and (len(items) == 1 or items[1] in ("latin1", "latin-1")))
            if not ok:
                self.fs.add("PICKLE-ARGS", self.loc(pos), f"_codecs.encode{_show(args)}: honest pickles only "
                            "encode a constant string to latin-1 bytes", _show(args))

    def build(self, pos: int) -> None:
        state = self.pop(pos)
        obj = self.top(pos)
        self.calls += 1
        if isinstance(obj, Global):
            self.fs.add("PICKLE-BUILD", self.loc(pos),
                        f"BUILD sets attributes on {obj.full} itself (a class or module), changing it for the "
                        "whole process", obj.full)
        elif isinstance(obj, Call):
            obj.state = state

    # the main loop
    def run(self, stream: BinaryIO) -> PickleResult:
        start = stream.tell()
        handlers = _HANDLERS
        pos = start
        fs = self.fs
        try:
            for opcode, arg, p in pickletools.genops(stream):
                pos = p if p is not None else pos
                fs.pickle_ops += 1
                if fs.pickle_ops > MAX_PICKLE_OPS:
                    raise PickleResourceLimit(f"resource limit: the pickles of this file run more than "
                                              f"{MAX_PICKLE_OPS:,} opcodes (an honest checkpoint's run a few "
                                              "hundred thousand); the rest was not analysed", pos)
                h = handlers.get(opcode.name)
                if h is None:  # pragma: no cover - every opcode has a handler (tested)
                    raise PickleFormatError(f"unsupported opcode {opcode.name}", pos)
                if opcode.name == "STOP":
                    value = self.pop(pos)  # the stdlib unpickler ignores whatever else is left on the stack
                    return PickleResult(value, self.calls, self.persistent, start, stream.tell())
                h(self, arg, pos)
        except (PickleFormatError, PickleResourceLimit):
            raise
        except (ValueError, EOFError, IndexError, KeyError, UnicodeDecodeError, OverflowError, MemoryError,
                TypeError) as exc:
            raise PickleFormatError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                                    stream.tell()) from exc
        raise PickleFormatError("stream ends without STOP", stream.tell())


def _show(v: Any, depth: int = 0) -> str:
    if depth > 3:
        return "..."
    if isinstance(v, Global):
        return v.full
    if isinstance(v, Call):
        return f"{_show(v.func, depth + 1)}(...)"
    if isinstance(v, tuple):
        return "(" + ", ".join(_show(x, depth + 1) for x in v[:6]) + (", ..." if len(v) > 6 else "") + ")"
    if isinstance(v, SymList):
        return "[...]"
    if isinstance(v, SymDict):
        return "{...}"
    if isinstance(v, (str, bytes)):
        r = repr(v)
        return r if len(r) <= 80 else r[:77] + "..."
    if isinstance(v, (Persistent, Opaque)):
        return type(v).__name__.lower()
    return repr(v)[:80]


def _first_arg(args: Any) -> Any:
    if isinstance(args, tuple) and args:
        return args[0]
    return None


#: Nodes of an argument structure visited when looking for embedded bytes (memo sharing makes DAGs).
MAX_ARG_NODES = 100_000


def _constant_bytes(v: Any) -> tuple[list[bytes], bool]:
    """Every distinct constant byte string inside an argument structure, and whether all of it was visited.

    The structure can share sub-structures through the memo (a 600-byte pickle can describe a tree with
    billions of paths): each node is visited once, and at most :data:`MAX_ARG_NODES` nodes are visited.
    """
    out: list[bytes] = []
    seen_nodes: set[int] = set()
    seen_blobs: set[bytes] = set()
    todo: list[tuple[Any, int]] = [(v, 0)]
    while todo and len(seen_nodes) < MAX_ARG_NODES:
        x, depth = todo.pop()
        if depth > 20 or id(x) in seen_nodes:
            continue
        seen_nodes.add(id(x))
        blob: bytes | None = None
        if isinstance(x, (bytes, bytearray)):
            blob = bytes(x)
        elif isinstance(x, str) and depth == 1:
            # pickle.loads on a latin-1 str (protocol 0 spelling of bytes) is still a pickle
            blob = x.encode("latin-1", errors="ignore")
        elif isinstance(x, tuple):
            todo.extend((y, depth + 1) for y in reversed(x))
        elif isinstance(x, SymList):
            todo.extend((y, depth + 1) for y in reversed(x.items))
        elif isinstance(x, Call):
            # io.BytesIO(b"...") or _codecs.encode("...", "latin1") around the bytes
            if isinstance(x.func, Global) and x.func.full == "_codecs.encode" and isinstance(x.args, tuple) \
                    and x.args and isinstance(x.args[0], str):
                blob = x.args[0].encode("latin-1", errors="ignore")
            else:
                todo.append((x.args, depth + 1))
        if blob is not None and blob not in seen_blobs:
            seen_blobs.add(blob)
            out.append(blob)
    return out, not todo


# Opcode handlers ------------------------------------------------------------------------------------------------

def _push_arg(m: PickleMachine, arg: Any, pos: int) -> None:
    m.stack.append(arg)


def _push_const(value: Any) -> Callable[[PickleMachine, Any, int], None]:
    def h(m: PickleMachine, arg: Any, pos: int) -> None:
        m.stack.append(value)
    return h


def _proto(m: PickleMachine, arg: Any, pos: int) -> None:
    m.proto = int(arg)


def _frame(m: PickleMachine, arg: Any, pos: int) -> None:
    pass


def _mark(m: PickleMachine, arg: Any, pos: int) -> None:
    m.metastack.append(m.stack)
    m.stack = []


def _pop(m: PickleMachine, arg: Any, pos: int) -> None:
    if m.stack:
        m.stack.pop()
    else:  # POP with an empty stack pops the mark (as the stdlib unpickler does)
        m.pop_mark(pos)


def _pop_mark(m: PickleMachine, arg: Any, pos: int) -> None:
    m.pop_mark(pos)


def _dup(m: PickleMachine, arg: Any, pos: int) -> None:
    m.stack.append(m.top(pos))


def _binbytes(m: PickleMachine, arg: Any, pos: int) -> None:
    m.stack.append(bytes(arg))


def _bytearray(m: PickleMachine, arg: Any, pos: int) -> None:
    m.stack.append(bytearray(arg))


def _buffer(m: PickleMachine, arg: Any, pos: int) -> None:
    m.stack.append(Opaque("out-of-band buffer"))


def _readonly_buffer(m: PickleMachine, arg: Any, pos: int) -> None:
    m.top(pos)


def _string(m: PickleMachine, arg: Any, pos: int) -> None:
    # STRING/BINSTRING: Python 2 str; decoded as latin-1 like encoding="latin1" would (ASCII by default)
    m.stack.append(arg if isinstance(arg, str) else bytes(arg).decode("latin-1"))


def _empty_list(m: PickleMachine, arg: Any, pos: int) -> None:
    m.stack.append(SymList())


def _append(m: PickleMachine, arg: Any, pos: int) -> None:
    value = m.pop(pos)
    lst = m.top(pos)
    if isinstance(lst, SymList):
        lst.items.append(value)
    elif isinstance(lst, (Call, Global)):
        # list-like objects get .append / .extend called: a method call on an arbitrary object
        m.calls += 1


def _appends(m: PickleMachine, arg: Any, pos: int) -> None:
    items = m.pop_mark(pos)
    lst = m.top(pos)
    if isinstance(lst, SymList):
        lst.items.extend(items)
    elif isinstance(lst, (Call, Global)):
        m.calls += 1


def _list(m: PickleMachine, arg: Any, pos: int) -> None:
    items = m.pop_mark(pos)  # pop first: it replaces m.stack
    m.stack.append(SymList(items))


def _empty_tuple(m: PickleMachine, arg: Any, pos: int) -> None:
    m.stack.append(())


def _tuple(m: PickleMachine, arg: Any, pos: int) -> None:
    items = m.pop_mark(pos)
    m.stack.append(tuple(items))


def _tuple_n(n: int) -> Callable[[PickleMachine, Any, int], None]:
    def h(m: PickleMachine, arg: Any, pos: int) -> None:
        if len(m.stack) < n:
            raise PickleFormatError("stack underflow", pos)
        items = m.stack[len(m.stack) - n:]
        del m.stack[len(m.stack) - n:]
        m.stack.append(tuple(items))
    return h


def _empty_dict(m: PickleMachine, arg: Any, pos: int) -> None:
    m.stack.append(SymDict())


def _dict(m: PickleMachine, arg: Any, pos: int) -> None:
    items = m.pop_mark(pos)
    if len(items) % 2:
        raise PickleFormatError("odd number of items for DICT", pos)
    m.stack.append(SymDict(list(zip(items[::2], items[1::2], strict=True))))


def _setitem(m: PickleMachine, arg: Any, pos: int) -> None:
    value = m.pop(pos)
    key = m.pop(pos)
    d = m.top(pos)
    if isinstance(d, SymDict):
        d.pairs.append((key, value))
    elif isinstance(d, Call):
        m.calls += 1  # __setitem__ on an object
        d.pairs.append((key, value))
    elif isinstance(d, Global):
        m.calls += 1


def _setitems(m: PickleMachine, arg: Any, pos: int) -> None:
    items = m.pop_mark(pos)
    if len(items) % 2:
        raise PickleFormatError("odd number of items for SETITEMS", pos)
    d = m.top(pos)
    if isinstance(d, SymDict):
        d.pairs.extend(zip(items[::2], items[1::2], strict=True))
    elif isinstance(d, Call):
        m.calls += 1
        d.pairs.extend(zip(items[::2], items[1::2], strict=True))
    elif isinstance(d, Global):
        m.calls += 1


def _empty_set(m: PickleMachine, arg: Any, pos: int) -> None:
    m.stack.append(SymSet())


def _additems(m: PickleMachine, arg: Any, pos: int) -> None:
    items = m.pop_mark(pos)
    s = m.top(pos)
    if isinstance(s, SymSet):
        s.items.extend(items)
    elif isinstance(s, (Call, Global)):
        m.calls += 1


def _frozenset(m: PickleMachine, arg: Any, pos: int) -> None:
    items = m.pop_mark(pos)
    m.stack.append(SymSet(items))


def _get(m: PickleMachine, arg: Any, pos: int) -> None:
    idx = int(arg)
    if idx not in m.memo:
        raise PickleFormatError(f"memo key {idx} not defined", pos)
    m.stack.append(m.memo[idx])


def _put(m: PickleMachine, arg: Any, pos: int) -> None:
    idx = int(arg)
    if idx < 0:
        raise PickleFormatError("negative memo key", pos)
    m.memo[idx] = m.top(pos)


def _memoize(m: PickleMachine, arg: Any, pos: int) -> None:
    m.memo[len(m.memo)] = m.top(pos)


def _ext(m: PickleMachine, arg: Any, pos: int) -> None:
    m.fs.add("PICKLE-EXTENSION", m.loc(pos), f"uses extension code {arg}: the global it names is registered at "
             "load time (copyreg) and cannot be checked", str(arg))
    m.stack.append(Global(f"<extension {arg}>", pos, computed=True))


def _global(m: PickleMachine, arg: Any, pos: int) -> None:
    module, _, name = str(arg).partition(" ")
    m.stack.append(m.global_(module, name, pos, "GLOBAL"))


def _stack_global(m: PickleMachine, arg: Any, pos: int) -> None:
    name = m.pop(pos)
    module = m.pop(pos)
    m.stack.append(m.global_(module, name, pos, "STACK_GLOBAL"))


def _reduce(m: PickleMachine, arg: Any, pos: int) -> None:
    args = m.pop(pos)
    func = m.pop(pos)
    m.stack.append(m.call(func, args, pos, "REDUCE"))


def _build(m: PickleMachine, arg: Any, pos: int) -> None:
    m.build(pos)


def _inst(m: PickleMachine, arg: Any, pos: int) -> None:
    module, _, name = str(arg).partition(" ")
    args = tuple(m.pop_mark(pos))
    cls = m.global_(module, name, pos, "INST")
    m.stack.append(m.call(cls, args, pos, "INST"))


def _obj(m: PickleMachine, arg: Any, pos: int) -> None:
    items = m.pop_mark(pos)
    if not items:
        raise PickleFormatError("OBJ without a class", pos)
    m.stack.append(m.call(items[0], tuple(items[1:]), pos, "OBJ"))


def _newobj(m: PickleMachine, arg: Any, pos: int) -> None:
    args = m.pop(pos)
    cls = m.pop(pos)
    m.stack.append(m.call(cls, args, pos, "NEWOBJ"))


def _newobj_ex(m: PickleMachine, arg: Any, pos: int) -> None:
    kwargs = m.pop(pos)
    args = m.pop(pos)
    cls = m.pop(pos)
    m.stack.append(m.call(cls, args, pos, "NEWOBJ_EX", kwargs))


def _persid(m: PickleMachine, arg: Any, pos: int) -> None:
    m.persistent.append(arg)
    m.stack.append(Persistent(arg))


def _binpersid(m: PickleMachine, arg: Any, pos: int) -> None:
    pid = m.pop(pos)
    m.persistent.append(pid)
    m.stack.append(Persistent(pid))


def _stop(m: PickleMachine, arg: Any, pos: int) -> None:  # handled in the loop
    pass


_HANDLERS: dict[str, Callable[[PickleMachine, Any, int], None]] = {
    # constants
    "INT": _push_arg, "BININT": _push_arg, "BININT1": _push_arg, "BININT2": _push_arg, "LONG": _push_arg,
    "LONG1": _push_arg, "LONG4": _push_arg, "FLOAT": _push_arg, "BINFLOAT": _push_arg,
    "STRING": _string, "BINSTRING": _string, "SHORT_BINSTRING": _string,
    "BINBYTES": _binbytes, "SHORT_BINBYTES": _binbytes, "BINBYTES8": _binbytes, "BYTEARRAY8": _bytearray,
    "NEXT_BUFFER": _buffer, "READONLY_BUFFER": _readonly_buffer,
    "NONE": _push_const(None), "NEWTRUE": _push_const(True), "NEWFALSE": _push_const(False),
    "UNICODE": _push_arg, "SHORT_BINUNICODE": _push_arg, "BINUNICODE": _push_arg, "BINUNICODE8": _push_arg,
    # containers
    "EMPTY_LIST": _empty_list, "APPEND": _append, "APPENDS": _appends, "LIST": _list,
    "EMPTY_TUPLE": _empty_tuple, "TUPLE": _tuple, "TUPLE1": _tuple_n(1), "TUPLE2": _tuple_n(2),
    "TUPLE3": _tuple_n(3), "EMPTY_DICT": _empty_dict, "DICT": _dict, "SETITEM": _setitem, "SETITEMS": _setitems,
    "EMPTY_SET": _empty_set, "ADDITEMS": _additems, "FROZENSET": _frozenset,
    # stack and memo
    "POP": _pop, "DUP": _dup, "MARK": _mark, "POP_MARK": _pop_mark, "GET": _get, "BINGET": _get,
    "LONG_BINGET": _get, "PUT": _put, "BINPUT": _put, "LONG_BINPUT": _put, "MEMOIZE": _memoize,
    # globals, calls, objects
    "EXT1": _ext, "EXT2": _ext, "EXT4": _ext, "GLOBAL": _global, "STACK_GLOBAL": _stack_global,
    "REDUCE": _reduce, "BUILD": _build, "INST": _inst, "OBJ": _obj, "NEWOBJ": _newobj, "NEWOBJ_EX": _newobj_ex,
    # machine control
    "PROTO": _proto, "STOP": _stop, "FRAME": _frame, "PERSID": _persid, "BINPERSID": _binpersid,
}


# Streams ----------------------------------------------------------------------------------------------------------

@dataclass
class StreamResult:
    """What a stream of one or more pickles holds."""

    pickles: list[PickleResult]
    """Each complete pickle, in order."""
    end: int
    """Byte offset where the scan stopped."""
    legacy_torch: bool = False
    """The stream is a legacy ``torch.save`` file (magic number, protocol, sys info, data, storage keys)."""
    error: str | None = None
    """Why parsing stopped early, if it did."""


def _is_pickle_start(stream: BinaryIO) -> bool:
    pos = stream.tell()
    b = stream.read(2)
    stream.seek(pos)
    if not b:
        return False
    if b[0] == 0x80:
        return len(b) == 2 and b[1] <= 5
    return chr(b[0]) in _PROTO0_FIRST


_PROTO0_FIRST = {op.code for op in pickletools.opcodes if op.proto <= 1} - {"."}


def scan_pickle_stream(stream: BinaryIO, fs: PickleReport, *, where: str | None,
                       nested: Callable[[bytes, str], None] | None = None, max_pickles: int = 1024,
                       expect_more: bool = True) -> StreamResult:
    """Run every pickle in ``stream`` through the symbolic machine and report into ``fs``.

    Stacked pickles are read until the stream ends, a non-pickle byte follows, or (for a legacy torch file)
    the known layout of five pickles is complete. ``nested(blob, location)`` is called for the byte argument of
    a nested loader (``torch.load``, ``pickle.loads``, ...).
    """
    results: list[PickleResult] = []
    size = _stream_size(stream)
    legacy = False
    while len(results) < max_pickles:
        if results and (stream.tell() >= size or not expect_more):
            break
        if results and not _is_pickle_start(stream):
            fs.add("PICKLE-TRAILING-DATA", at(where, f"byte {stream.tell()}"),
                   f"{size - stream.tell()} bytes follow the last pickle; no pickle loader reads them")
            break
        machine = PickleMachine(fs, where, nested)
        try:
            res = machine.run(stream)
        except PickleResourceLimit as exc:
            fs.unverified(f"{where + ': ' if where else ''}{exc}")
            return StreamResult(results, exc.pos if exc.pos is not None else stream.tell(), legacy, str(exc))
        except PickleFormatError as exc:
            pos = exc.pos if exc.pos is not None else stream.tell()
            if machine.calls:
                fs.add("PICKLE-BROKEN", at(where, f"byte {pos}"),
                       f"the pickle breaks ({exc}) after {machine.calls} call(s): a loader runs them before it "
                       "fails", str(exc))
            elif results and legacy is False:
                fs.add("PICKLE-TRAILING-DATA", at(where, f"byte {results[-1].end}"),
                       f"bytes after the last complete pickle do not form a pickle ({exc})")
            else:
                fs.unverified(f"{where + ': ' if where else ''}not a well-formed pickle at byte {pos}: "
                              f"{exc}")
            return StreamResult(results, pos, legacy, str(exc))
        results.append(res)
        if len(results) == 1 and res.value == TORCH_LEGACY_MAGIC and type(res.value) is int:
            legacy = True
        if legacy and len(results) == 5:
            break
    else:
        if stream.tell() < size:
            fs.unverified(f"{where + ': ' if where else ''}more than {max_pickles} stacked pickles; the "
                          "rest of the stream was not scanned")
    return StreamResult(results, stream.tell(), legacy)


def _stream_size(stream: BinaryIO) -> int:
    pos = stream.tell()
    stream.seek(0, io.SEEK_END)  # mmap.seek returns None: ask tell()
    end = stream.tell()
    stream.seek(pos)
    return end


def storage_refs(pids: list[Any]) -> list[tuple[str, str, int]]:
    """Torch storage references ``(storage type, key, numel)`` from persistent ids (malformed ones skipped)."""
    out = []
    for pid in pids:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], Global) \
                and isinstance(pid[2], str) and isinstance(pid[4], int):
            out.append((pid[1].full, pid[2], pid[4]))
    return out


def constant_list(value: Any) -> list[Any] | None:
    """The items of a symbolic list or tuple of constants, else None."""
    if isinstance(value, SymList):
        return value.items
    if isinstance(value, tuple):
        return list(value)
    return None


# Reading torch archives -------------------------------------------------------------------------------------------

def evaluate_pickle(stream: IO[bytes], *, allow_globals: frozenset[str] = frozenset()) -> Any:
    """The symbolic value of the next pickle in ``stream`` (nothing is imported or called).

    The tensor reader lists the tensors of a torch archive from this value (:func:`torch_tensor_records`), so
    it reads a pickle exactly as the scanner does. Raises :class:`PickleFormatError` for a malformed pickle.
    """
    machine = PickleMachine(DiscardReport(_Allow(allow_globals)), None, None)
    try:
        return machine.run(cast(BinaryIO, stream)).value
    except PickleResourceLimit as exc:
        raise PickleFormatError(str(exc), exc.pos) from exc


#: torch storage class (``torch.FloatStorage``) -> safetensors-style dtype name.
TORCH_STORAGE_DTYPE: dict[str, str] = {
    "FloatStorage": "F32", "HalfStorage": "F16", "BFloat16Storage": "BF16", "DoubleStorage": "F64",
    "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8", "ByteStorage": "U8",
    "BoolStorage": "BOOL", "ComplexFloatStorage": "C64", "Float8_e4m3fnStorage": "F8_E4M3",
    "Float8_e5m2Storage": "F8_E5M2",
}
#: Containers visited when listing the tensors of a symbolic value.
MAX_TENSOR_WALK = 2_000_000


@dataclass(frozen=True)
class TorchTensorRecord:
    """One tensor a torch pickle rebuilds (``torch._utils._rebuild_tensor_v2``), found symbolically."""

    key: tuple[str, ...]
    """Path of keys from the root object to the tensor."""
    dtype: str
    shape: tuple[int, ...]
    storage: str
    """Storage key (``archive/data/<storage>``)."""
    offset: int
    stride: tuple[int, ...]


def torch_tensor_records(root: Any) -> list[TorchTensorRecord]:
    """Every tensor reachable from a symbolic value through dicts, ``OrderedDict``s, lists and tuples.

    Each container is walked once, however often the memo shares it (a shared sub-structure keeps the name of
    the first path that reaches it); a tensor reached by several paths is listed under each.
    """
    out: list[TorchTensorRecord] = []
    seen: set[int] = set()
    todo: list[tuple[Any, tuple[str, ...]]] = [(root, ())]
    while todo:
        obj, key = todo.pop()
        if isinstance(obj, Call) and isinstance(obj.func, Global):
            rec = _tensor_record(obj, key)
            if rec is not None:
                out.append(rec)
                continue
        if id(obj) in seen or len(key) > 64:
            continue
        if len(seen) >= MAX_TENSOR_WALK:
            raise PickleFormatError(f"resource limit: more than {MAX_TENSOR_WALK:,} containers", None)
        seen.add(id(obj))
        children: list[tuple[Any, Any]] = []
        if isinstance(obj, SymDict):
            children = obj.pairs
        elif isinstance(obj, Call) and isinstance(obj.func, Global) and obj.func.full == "collections.OrderedDict":
            children = obj.pairs
        elif isinstance(obj, SymList) and key:
            children = list(enumerate(obj.items))
        elif isinstance(obj, tuple) and key:
            children = list(enumerate(obj))
        todo.extend((v, key + (str(k),)) for k, v in reversed(children))
    return out


def _tensor_record(call: Call, key: tuple[str, ...]) -> TorchTensorRecord | None:
    fn = call.func.full
    args = call.args if isinstance(call.args, tuple) else ()
    if fn == "torch._utils._rebuild_parameter" and args and isinstance(args[0], Call) \
            and isinstance(args[0].func, Global):
        return _tensor_record(args[0], key)
    if fn == "torch._tensor._rebuild_from_type_v2" and len(args) >= 3 and isinstance(args[0], Global) \
            and isinstance(args[2], tuple):
        return _tensor_record(Call(args[0], args[2], call.pos), key)
    if fn not in ("torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor") or len(args) < 4:
        return None
    storage, offset, size, stride = args[:4]
    if not isinstance(storage, Persistent) or not isinstance(storage.pid, tuple) or len(storage.pid) < 3:
        return None
    stype = storage.pid[1]
    short = stype.full.rsplit(".", 1)[-1] if isinstance(stype, Global) else "?"
    dtype = TORCH_STORAGE_DTYPE.get(short, short)
    if not isinstance(size, tuple) or not all(isinstance(d, int) and not isinstance(d, bool) for d in size):
        return None
    return TorchTensorRecord(key=key, dtype=dtype, shape=tuple(size), storage=str(storage.pid[2]),
                             offset=offset if isinstance(offset, int) else 0,
                             stride=tuple(stride) if isinstance(stride, tuple) else ())
