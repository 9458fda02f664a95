"""Remote code: ``auto_map`` entries and every Python file in the folder, read with :mod:`ast`, never imported.

``trust_remote_code=True`` imports the modules that ``auto_map`` in ``config.json`` or ``tokenizer_config.json``
names, and (transformers 5) ``custom_generate/generate.py`` when it exists, with no ``auto_map`` at all; each of
them pulls in the files its relative imports name (found by transformers' own regular expressions).
:func:`loader_python_files` lists them the way transformers looks them up, through symbolic links that stay in the
folder, so each is analysed as Python whatever its bytes also parse as. A folder with custom code is never *safe*
unless the caller allows remote code; the analysis still reports what the code would do: statements that run at
import time, imports of process, network, FFI and dynamic-import modules (file-system modules as low), and calls
of ``eval``/``exec``/``compile``/``__import__`` or of commands.

    >>> fs = FileScan("modeling_x.py", ScanOptions())
    >>> scan_python(b"import subprocess\\nsubprocess.run(['true'])\\n", fs, where=None, name="modeling_x.py")
    >>> sorted({f.rule for f in fs.findings})
    ['CODE-EXEC', 'CODE-FILE', 'CODE-IMPORT', 'CODE-IMPORT-TIME']
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from assay.scan.context import FileScan, at
from assay.scan.findings import Severity

_RISKY_MODULES = {
    "subprocess": "runs processes", "pty": "spawns processes", "multiprocessing": "starts processes",
    "socket": "opens network connections", "ssl": "network access", "http": "network access",
    "urllib": "network access", "urllib3": "network access", "requests": "network access", "httpx": "network access",
    "aiohttp": "network access", "ftplib": "network access", "smtplib": "network access",
    "telnetlib": "network access", "paramiko": "remote shells", "websocket": "network access",
    "ctypes": "calls native code", "cffi": "calls native code", "_ctypes": "calls native code",
    "importlib": "imports modules by computed name", "imp": "imports modules by computed name",
    "runpy": "runs modules and scripts", "marshal": "loads code objects", "pickle": "unpickles data",
    "dill": "unpickles code", "cloudpickle": "unpickles code", "webbrowser": "opens a browser",
    "code": "runs an interactive interpreter", "codeop": "compiles code",
}
_FS_MODULES = {"os": "process and file-system access", "shutil": "file-system access",
               "pathlib": "file-system access", "tempfile": "file-system access", "glob": "file-system access",
               "sys": "interpreter state"}
_EXEC_CALLS = {"eval", "exec", "compile", "__import__", "execfile", "breakpoint"}
_COMMAND_CALLS = {"os.system", "os.popen", "os.execv", "os.execve", "os.execl", "os.execlp", "os.execvp",
                  "os.spawnl", "os.spawnv", "os.spawnve", "os.posix_spawn", "os.fork", "os.startfile",
                  "subprocess.run", "subprocess.call", "subprocess.check_call", "subprocess.check_output",
                  "subprocess.Popen", "subprocess.getoutput", "subprocess.getstatusoutput", "pty.spawn",
                  "importlib.import_module", "runpy.run_path", "runpy.run_module", "marshal.loads",
                  "pickle.loads", "pickle.load", "ctypes.CDLL", "ctypes.cdll.LoadLibrary", "socket.socket",
                  "urllib.request.urlopen", "requests.get", "requests.post"}


def scan_python(source: bytes, fs: FileScan, *, where: str | None, name: str) -> None:
    """Analyse one Python file by its syntax tree."""
    allowed = fs.options.allow_remote_code
    fs.add("CODE-FILE", where, f"Python code ({name}): trust_remote_code=True or a script could run it"
           + (" (allowed by --allow-remote-code)" if allowed else ""), name,
           severity=Severity.INFO if allowed else None)
    try:
        tree = ast.parse(source, filename=name)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        fs.unverified(f"{where or name}: Python source does not parse ({type(exc).__name__})")
        return
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[(a.asname or a.name).split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
                _check_import(a.name, node, fs, where)
        elif isinstance(node, ast.ImportFrom):
            mod = "." * node.level + (node.module or "")
            if node.level == 0:
                _check_import(mod, node, fs, where)
            for a in node.names:
                aliases[a.asname or a.name] = f"{mod}.{a.name}" if node.level == 0 else a.name
        elif isinstance(node, ast.Call):
            called = _dotted(node.func, aliases)
            if called is None:
                continue
            last = called.rsplit(".", 1)[-1]
            if called in _EXEC_CALLS or (called.startswith("builtins.") and last in _EXEC_CALLS):
                fs.add("CODE-EXEC", at(where, f"line {node.lineno}"), f"calls {called}(): runs code built at run "
                       "time", called)
            elif called in _COMMAND_CALLS:
                fs.add("CODE-EXEC", at(where, f"line {node.lineno}"), f"calls {called}()", called)
    for stmt in tree.body:
        if _runs_at_import(stmt):
            fs.add("CODE-IMPORT-TIME", at(where, f"line {stmt.lineno}"), "a statement runs as soon as the module is "
                   "imported", ast.unparse(stmt).splitlines()[0][:120] if hasattr(ast, "unparse") else None)


def _check_import(module: str, node: ast.AST, fs: FileScan, where: str | None) -> None:
    top = module.split(".")[0]
    line = at(where, f"line {getattr(node, 'lineno', '?')}")
    if top in _RISKY_MODULES:
        fs.add("CODE-IMPORT", line, f"imports {module}: {_RISKY_MODULES[top]}", module)
    elif top in _FS_MODULES:
        fs.add("CODE-IMPORT-FS", line, f"imports {module}: {_FS_MODULES[top]}", module)


def _dotted(func: ast.expr, aliases: dict[str, str]) -> str | None:
    parts: list[str] = []
    cur: Any = func
    while isinstance(cur, ast.Attribute):
        parts.append(cur.attr)
        cur = cur.value
    if isinstance(cur, ast.Name):
        head = aliases.get(cur.id, cur.id)
        return ".".join([head, *reversed(parts)])
    if isinstance(cur, ast.Call):  # __import__('os').system(...)
        inner = _dotted(cur.func, aliases)
        if inner in ("__import__", "importlib.import_module") and cur.args and isinstance(cur.args[0], ast.Constant):
            return ".".join([str(cur.args[0].value), *reversed(parts)])
    return None


def _runs_at_import(stmt: ast.stmt) -> bool:
    """Module-level code beyond definitions, imports and plain assignments of names and literals."""
    if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Pass)):
        return False
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return False  # docstring
    if isinstance(stmt, ast.If) and _is_main_guard(stmt.test):
        return False
    if isinstance(stmt, ast.Try):
        # try: import x / except ImportError: ... (optional dependencies) is import-only
        body = stmt.body + [s for h in stmt.handlers for s in h.body] + stmt.orelse + stmt.finalbody
        return any(_runs_at_import(s) for s in body)
    if isinstance(stmt, ast.If):
        return any(_runs_at_import(s) for s in stmt.body + stmt.orelse) or _has_call(stmt.test, strict=True)
    if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        value = stmt.value
        return value is not None and _has_call(value, strict=True)
    return True


_HARMLESS_CALLS = {"logging.getLogger", "logging.get_logger", "get_logger", "getLogger", "TypeVar", "namedtuple",
                   "collections.namedtuple", "dataclass", "field", "dict", "list", "tuple", "set", "frozenset",
                   "object", "re.compile", "compile_regex", "is_torch_available", "is_flash_attn_2_available",
                   "is_torch_flex_attn_available", "logger.warning", "version.parse", "int", "float", "str",
                   "OrderedDict", "defaultdict", "frozendict", "Enum", "ContextVar", "torch.device", "torch.dtype",
                   "_LazyModule", "is_accelerate_available", "is_flash_attn_greater_or_equal_2_10"}


def _has_call(expr: ast.AST, *, strict: bool) -> bool:
    for node in ast.walk(expr):
        if isinstance(node, ast.Call):
            name = _dotted(node.func, {})
            if name is None:
                return True
            last = name.rsplit(".", 1)[-1]
            if name in _HARMLESS_CALLS or last in _HARMLESS_CALLS or last.startswith("is_") or \
                    last.startswith("get_logger"):
                continue
            if name in _EXEC_CALLS or "." in name or strict:
                return True
    return False


def _is_main_guard(test: ast.expr) -> bool:
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and len(test.comparators) == 1 and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


def check_auto_map(value: Any, fs: FileScan, *, where: str | None) -> None:
    """``auto_map``: the classes (``module.Class``) that trust_remote_code=True imports."""
    refs = strings_in(value)
    allowed = fs.options.allow_remote_code
    remote = [r for r in refs if "--" in r]
    local = [r for r in refs if "--" not in r]
    if remote:
        fs.add("CODE-AUTO-MAP-REMOTE", at(where, "auto_map"), "auto_map loads code from another repository: "
               + ", ".join(remote[:5]), ", ".join(remote[:5]))
    if local:
        modules = sorted({r.rsplit(".", 1)[0] + ".py" for r in local if "." in r})
        fs.add("CODE-AUTO-MAP", at(where, "auto_map"),
               f"auto_map names custom code ({', '.join(modules[:5])}) that trust_remote_code=True imports"
               + (" (allowed by --allow-remote-code)" if allowed else ""), ", ".join(local[:5]),
               severity=Severity.INFO if allowed else None)


#: The module transformers imports on ``from_pretrained(..., trust_remote_code=True)`` without any ``auto_map``.
CUSTOM_GENERATE = "custom_generate/generate.py"
#: transformers' ``get_relative_imports``: ``import .x`` and ``from .x import y`` (the file ``<dir>/x.py``).
_RELATIVE_IMPORTS = (re.compile(r"^\s*import\s+\.(\S+)\s*$", re.MULTILINE),
                     re.compile(r"^\s*from\s+\.(\S+)\s+import", re.MULTILINE))
_MAX_JSON = 16 * 1024 * 1024


def loader_python_files(root: Path, files: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Model-relative paths of the Python files ``trust_remote_code=True`` can import, with why.

    ``auto_map`` targets of every top-level JSON file that has one (``module.Class`` -> ``module.py``),
    ``custom_generate/generate.py``, and, recursively, the files their relative imports name. A path counts when
    the loader would open it: through symbolic links, whatever the file's content looks like.
    """
    out: dict[str, str] = {}
    todo: list[tuple[str, str]] = []
    for name in files:
        if "/" in name or not name.endswith(".json"):
            continue
        for module in _auto_map_modules(root / name):
            todo.append((f"{module}.py", f"auto_map in {name}"))
    todo.append((CUSTOM_GENERATE, "transformers imports it under trust_remote_code=True (no auto_map needed)"))
    while todo:
        raw, why = todo.pop()
        rel = _normalise(raw)
        if rel is None or rel in out or not (root / rel).is_file():
            continue
        out[rel] = why
        try:
            with (root / rel).open("rb") as fh:
                text = fh.read(_MAX_JSON).decode("utf-8", "replace")
        except OSError:
            continue
        folder = PurePosixPath(rel).parent
        for pattern in _RELATIVE_IMPORTS:
            for module in pattern.findall(text):
                todo.append(((folder / f"{module}.py").as_posix(), f"imported by {rel}"))
    return out


def _normalise(rel: str) -> str | None:
    """A model-relative POSIX path with ``.`` and ``..`` resolved lexically; None if it leaves the folder."""
    norm = os.path.normpath(rel).replace(os.sep, "/")
    if norm.startswith("../") or norm == ".." or norm.startswith("/"):
        return None
    return norm


def _auto_map_modules(path: Path) -> list[str]:
    try:
        if path.stat().st_size > _MAX_JSON:
            return []
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return []
    if not isinstance(doc, dict) or "auto_map" not in doc:
        return []
    refs = strings_in(doc["auto_map"])
    modules = []
    for ref in refs:
        if "--" in ref:
            continue  # another repository's code: reported by check_auto_map
        module = ref.rsplit(".", 1)[0] if "." in ref else None
        if module:
            modules.append(module)
    return modules


def check_loader_file(source: bytes, fs: FileScan, *, rel: str, why: str, analysed: bool) -> None:
    """A file transformers would import: always analysed as Python, and named as remote code."""
    allowed = fs.options.allow_remote_code
    if rel == CUSTOM_GENERATE or rel.endswith("/" + CUSTOM_GENERATE):
        fs.add("CODE-CUSTOM-GENERATE", None, "custom_generate/generate.py replaces generate() and runs on "
               "from_pretrained(..., trust_remote_code=True), with no auto_map"
               + (" (allowed by --allow-remote-code)" if allowed else ""), rel,
               severity=Severity.INFO if allowed else None)
    if not analysed:
        scan_python(source, fs, where=f"as Python ({why})", name=PurePosixPath(rel).name)


def strings_in(value: Any) -> list[str]:
    """Every string inside ``value`` (nested lists, tuples and dict values), depth first."""
    out: list[str] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
    return out
