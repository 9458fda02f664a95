"""Hostile model files, built in code, with harmless payloads (``os.system('true')`` and the like).

Every sample is something a real attacker has done or could do to a checkpoint: code-execution globals spelled
every way the pickle machine allows, nested and broken pickles, zip header tricks, raw pickles named like
weights, numpy object arrays, Keras Lambda layers, chat-template injection, ``auto_map`` remote code, and
safetensors and GGUF headers that lie. Nothing here is ever unpickled, imported or rendered by the tests.

    samples = build_hostile(tmp_path / "hostile")
    for s in samples:
        report = scan_model(resolve(str(s.path)))
        assert report.verdict in ("unsafe", "unverified")
        assert not s.rules or set(s.rules) & {f.rule for f in report.findings}
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PAYLOAD = "true"
"""The shell command every payload would run: does nothing, succeeds."""


@dataclass(frozen=True)
class Sample:
    """One hostile file or folder and what the scanner must say about it."""

    name: str
    """Test id."""
    path: Path
    """The file or folder to scan."""
    rules: tuple[str, ...]
    """At least one of these rules must fire; empty means the verdict must be ``unverified``."""
    verdict: str = "unsafe"
    """``unsafe`` or ``unverified``."""


# Pickles, opcode by opcode ----------------------------------------------------------------------------------------

def _u(s: str) -> bytes:
    """BINUNICODE."""
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _su(s: str) -> bytes:
    """SHORT_BINUNICODE (protocol 4+)."""
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def _bytes(b: bytes) -> bytes:
    """BINBYTES (protocol 3+)."""
    return b"B" + struct.pack("<I", len(b)) + b


P0_GLOBAL = b"cos\nsystem\n(S'true'\ntR."
P0_INST = b"(S'true'\nios\nsystem\n."
P2_GLOBAL = b"\x80\x02cos\nsystem\nq\x00" + _u(PAYLOAD) + b"q\x01\x85q\x02Rq\x03."
P4_STACK_GLOBAL = b"\x80\x04" + _su("os") + b"\x94" + _su("system") + b"\x94\x93\x94" + _su(PAYLOAD) + b"\x85\x94R."
P5_STACK_GLOBAL = b"\x80\x05" + _su("posix") + _su("system") + b"\x93" + _su(PAYLOAD) + b"\x85R."
P4_FRAMED = b"\x80\x04\x95" + struct.pack("<Q", 30) + _su("subprocess") + _su("call") + b"\x93" + \
    b"]" + _su(PAYLOAD) + b"a\x85R."
# names memoized first, fetched later with BINGET
P4_MEMO = (b"\x80\x04" + _su("harmless") + b"\x94" + _su("os") + b"\x94" + _su("system") + b"\x94" + b"0"
           + b"h\x01h\x02\x93" + _su(PAYLOAD) + b"\x85R.")
P2_OBJ = b"\x80\x02(cos\nsystem\n" + _u(PAYLOAD) + b"o."
P2_NEWOBJ = b"\x80\x02csubprocess\nPopen\n]" + _u(PAYLOAD) + b"a\x85\x81."
P4_NEWOBJ_EX = b"\x80\x04" + _su("subprocess") + _su("Popen") + b"\x93]" + _su(PAYLOAD) + b"a\x85}\x92."
P2_EVAL = b"\x80\x02cbuiltins\neval\n" + _u("__import__('os').system('true')") + b"\x85R."
P2_EXEC_PY2 = b"\x80\x02c__builtin__\nexec\n" + _u("import os; os.system('true')") + b"\x85R."
P2_IMPORTLIB = (b"\x80\x02cbuiltins\ngetattr\n(cimportlib\nimport_module\n" + _u("os") + b"\x85R" + _u("system")
                + b"tR" + _u(PAYLOAD) + b"\x85R.")
P0_RUNPY = b"crunpy\n_run_code\n(S'import os; os.system(\"true\")'\n(dtR."
P0_PYDOC = b"cpydoc\nlocate\n(S'os.system'\ntR(S'true'\ntR."
P2_ATTRGETTER = (b"\x80\x02coperator\nattrgetter\n" + _u("system") + b"\x85Rcbuiltins\n__import__\n" + _u("os")
                 + b"\x85R\x85R" + _u(PAYLOAD) + b"\x85R.")
# module name built at load time: _operator.add('o', 's') -> 'os'
P4_COMPUTED = (b"\x80\x04" + _su("_operator") + _su("add") + b"\x93" + _su("o") + _su("s") + b"\x86R"
               + _su("system") + b"\x93" + _su(PAYLOAD) + b"\x85R.")
P2_EXT = b"\x80\x02\x82\x07" + _u(PAYLOAD) + b"\x85R."
P2_BUILD_GLOBAL = b"\x80\x02ccollections\nOrderedDict\nN}" + _u("__init__") + b"Ns\x86b."
P2_BROKEN = b"\x80\x02cos\nsystem\n" + _u(PAYLOAD) + b"\x85R\xff\xfe garbage"
P2_STACKED = b"\x80\x02}q\x00." + P2_GLOBAL
P3_NESTED_TORCH_LOAD = (b"\x80\x03ctorch\nload\ncio\nBytesIO\n" + _bytes(P2_GLOBAL) + b"\x85R\x85R.")
P3_NESTED_PICKLE_LOADS = b"\x80\x03c_pickle\nloads\n" + _bytes(P4_STACK_GLOBAL) + b"\x85R."
P3_NESTED_STORAGE = b"\x80\x03ctorch.storage\n_load_from_bytes\n" + _bytes(P0_GLOBAL) + b"\x85R."
P2_NESTED_COMPUTED = (b"\x80\x02cpickle\nloads\ncbuiltins\nbytes\n]\x85R\x85R.")
P2_NUMPY_OBJECT_DTYPE = (b"\x80\x02cnumpy\ndtype\n" + _u("O8") + b"\x89\x88\x87R.")
P2_CODECS_ODD = b"\x80\x02c_codecs\nencode\n" + _u("x") + _u("rot13") + b"\x86R."
# a state dict that ends with a call to webbrowser.open (not a classic "os" payload: still denied by default)
P2_UNKNOWN_GLOBAL = b"\x80\x02}(" + _u("w") + b"cwebbrowser\nopen\n" + _u("http://localhost") + b"\x85Ru."
P2_NOT_ALLOWLISTED = b"\x80\x02cmylib.layers\nCustomLayer\n)R."

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _long1(n: int) -> bytes:
    b = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(b)]) + b


def legacy_torch_file(data_pickle: bytes) -> bytes:
    """A legacy torch.save layout (magic, protocol, sys info, data pickle, storage keys) around ``data_pickle``."""
    magic = b"\x80\x02" + _long1(TORCH_LEGACY_MAGIC) + b"."
    proto = b"\x80\x02M\xe9\x03."
    sysinfo = b"\x80\x02}(" + _u("protocol_version") + b"M\xe9\x03" + _u("little_endian") + b"\x88u."
    keys = b"\x80\x02]."
    return magic + proto + sysinfo + data_pickle + keys


# Zip, by hand (so that every header field can lie) ---------------------------------------------------------------

@dataclass
class Member:
    """One zip member and the lies its headers tell."""

    name: str
    data: bytes
    local_name: str | None = None
    crc: int | None = None
    flags: int = 0
    gap_before: bytes = b""


def raw_zip(members: Sequence[Member], *, prefix: bytes = b"", fix_offsets: bool = True) -> bytes:
    """A stored (uncompressed) zip whose local and central headers can disagree."""
    out = bytearray(prefix)
    central = bytearray()
    base = 0 if fix_offsets else len(prefix)
    for m in members:
        out += m.gap_before
        offset = len(out) - base
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        lname = (m.local_name or m.name).encode()
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, m.flags, 0, 0, 0x21, crc, len(m.data), len(m.data),
                           len(lname), 0) + lname + m.data
        cname = m.name.encode()
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, m.flags, 0, 0, 0x21, crc, len(m.data),
                               len(m.data), len(cname), 0, 0, 0, 0, 0, offset) + cname
    cd_offset = len(out) - base
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), cd_offset, 0)
    return bytes(out)


def torch_zip(data_pkl: bytes, *, extra: Sequence[Member] = (), **kw: object) -> bytes:
    """A torch-style archive (``archive/data.pkl``, ``archive/version``) around ``data_pkl``."""
    members = [Member("archive/data.pkl", data_pkl), Member("archive/version", b"3\n"), *extra]
    return raw_zip(members, **kw)  # type: ignore[arg-type]


HONEST_DATA_PKL = (b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01.")


# safetensors and GGUF, by hand --------------------------------------------------------------------------------

def safetensors_bytes(header: dict | str, data: bytes, *, header_len: int | None = None) -> bytes:
    """A safetensors file with any header (dict or raw JSON text) and any claimed header length."""
    text = header if isinstance(header, str) else json.dumps(header)
    raw = text.encode()
    n = len(raw) if header_len is None else header_len
    return struct.pack("<Q", n) + raw + data


def _gs(s: str | bytes, length: int | None = None) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b) if length is None else length) + b


def gguf_bytes(kvs: Sequence[tuple[str, int, bytes]], tensors: Sequence[tuple[str, Sequence[int], int, int]],
               data: bytes, *, alignment: int = 32, n_kv: int | None = None, n_tensors: int | None = None,
               key_len: int | None = None) -> bytes:
    """A GGUF v3 file: ``kvs`` as (key, value type, encoded value), ``tensors`` as (name, dims, type, offset)."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors) if n_tensors is None else n_tensors,
                                          len(kvs) if n_kv is None else n_kv))
    for i, (key, vtype, value) in enumerate(kvs):
        out += _gs(key, key_len if i == 0 else None) + struct.pack("<I", vtype) + value
    for name, dims, ttype, offset in tensors:
        out += _gs(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ttype, offset)
    pad = (-len(out)) % alignment
    return bytes(out) + b"\x00" * pad + data


def gguf_string_value(s: str) -> bytes:
    """An encoded GGUF string value."""
    return _gs(s)


# Chat templates ---------------------------------------------------------------------------------------------------

TEMPLATE_INJECTIONS: dict[str, str] = {
    "mro-subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "attr-filter": "{{ messages|attr('__class__') }}",
    "cycler-globals": "{{ cycler.__init__.__globals__.os.popen('true').read() }}",
    "lipsum-globals": "{{ lipsum.__globals__['os'].popen('true').read() }}",
    "joiner": "{{ joiner.__init__.__globals__ }}",
    "namespace-reach": "{% set ns = namespace %}{{ ns.__init__.__globals__ }}",
    "import": "{% import 'os' as os %}{{ os }}",
    "include": "{% include 'evil.jinja' %}",
    "extends": "{% extends 'base.jinja' %}",
    "concat-attr": "{{ messages|attr('__cla' ~ 'ss__') }}",
    "set-concat-item": "{% set a = '__cla' %}{% set b = 'ss__' %}{{ messages[a ~ b] }}",
    "reverse-item": "{{ messages['__ssalc__'|reverse] }}",
    "computed-attr": "{% for m in messages %}{{ m|attr(m['role']) }}{% endfor %}",
    "self-context": "{{ self._TemplateReference__context }}",
    "format-string": "{{ '{0.__class__}'|format(messages) }}",
    "plus-item": "{{ messages['__glo' + 'bals__'] }}",
    "map-attribute": "{{ messages|map(attribute='__class__')|list }}",
}


# Building the corpus ----------------------------------------------------------------------------------------------

def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def _folder(root: Path, name: str, files: dict[str, bytes | str]) -> Path:
    folder = root / name
    for rel, data in files.items():
        _write(folder / rel, data)
    return folder


def _npy(descr: str, shape: tuple[int, ...], body: bytes) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin-1")
    total = 10 + len(header) + 1
    header += b" " * ((-total) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body


def _h5(path: Path, model_config: dict) -> Path | None:
    try:
        import h5py  # type: ignore[import-untyped]
    except ImportError:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(model_config)
        f.attrs["keras_version"] = "2.15.0"
        f.create_group("model_weights")
    return path


def _keras_lambda_config() -> dict:
    return {"class_name": "Sequential", "config": {"name": "seq", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4], "name": "in"}},
        {"class_name": "Lambda", "config": {"name": "evil", "function": [
            "4wEAAAAAAAAAAAAAAAEAAAADAAAAQwAAAHMMAAAAdABkAYMBAQB8AFMAKQJO2gR0cnVlKQHaCWV4ZWMpAdoBeKkAcgQAAAD6"
            "Ajxz", None, None], "function_type": "lambda"}}]}}


def _keras3_lambda_config() -> dict:
    return {"module": "keras", "class_name": "Sequential", "config": {"name": "seq", "layers": [
        {"module": "keras.layers", "class_name": "Lambda", "config": {"name": "evil", "function": {
            "class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAAAAAAAAEAAAAD", "defaults": None,
                                                   "closure": None}}}, "registered_name": None}]},
            "registered_name": None}


def build_hostile(root: Path) -> list[Sample]:
    """Write every hostile sample under ``root`` and return them."""
    root.mkdir(parents=True, exist_ok=True)
    s: list[Sample] = []

    def add(name: str, data: bytes | str, rules: tuple[str, ...], filename: str | None = None,
            verdict: str = "unsafe") -> None:
        s.append(Sample(name, _write(root / name / (filename or "pytorch_model.bin"), data), rules, verdict))

    dangerous = ("PICKLE-GLOBAL-DANGEROUS",)
    # globals that execute code, every spelling
    add("p0-global", P0_GLOBAL, dangerous)
    add("p0-inst", P0_INST, dangerous)
    add("p2-global", P2_GLOBAL, dangerous)
    add("p4-stack-global", P4_STACK_GLOBAL, dangerous)
    add("p5-stack-global-posix", P5_STACK_GLOBAL, dangerous)
    add("p4-framed-subprocess", P4_FRAMED, dangerous)
    add("p4-memoized-names", P4_MEMO, dangerous)
    add("p2-obj", P2_OBJ, dangerous)
    add("p2-newobj-popen", P2_NEWOBJ, dangerous)
    add("p4-newobj-ex-popen", P4_NEWOBJ_EX, dangerous)
    add("p2-builtins-eval", P2_EVAL, dangerous)
    add("p2-py2-builtin-exec", P2_EXEC_PY2, dangerous)
    add("p2-importlib-getattr", P2_IMPORTLIB, dangerous)
    add("p0-runpy", P0_RUNPY, dangerous)
    add("p0-pydoc-locate", P0_PYDOC, dangerous)
    add("p2-operator-attrgetter", P2_ATTRGETTER, dangerous)
    add("p4-computed-name", P4_COMPUTED, ("PICKLE-COMPUTED-GLOBAL",))
    add("p2-extension-code", P2_EXT, ("PICKLE-EXTENSION",))
    add("p2-build-on-class", P2_BUILD_GLOBAL, ("PICKLE-BUILD",))
    add("p2-broken-after-reduce", P2_BROKEN, ("PICKLE-BROKEN",))
    add("p2-stacked-second-evil", P2_STACKED, dangerous)
    add("p3-nested-torch-load", P3_NESTED_TORCH_LOAD, ("PICKLE-NESTED-LOADER",))
    add("p3-nested-pickle-loads", P3_NESTED_PICKLE_LOADS, ("PICKLE-NESTED-LOADER",))
    add("p3-nested-storage-bytes", P3_NESTED_STORAGE, ("PICKLE-NESTED-LOADER",))
    add("p2-nested-computed-bytes", P2_NESTED_COMPUTED, ("PICKLE-NESTED-LOADER",))
    add("p2-numpy-object-dtype", P2_NUMPY_OBJECT_DTYPE, ("PICKLE-ARGS",))
    add("p2-codecs-rot13", P2_CODECS_ODD, ("PICKLE-ARGS",))
    add("p2-webbrowser-in-dict", P2_UNKNOWN_GLOBAL, dangerous)
    add("p2-custom-class", P2_NOT_ALLOWLISTED, ("PICKLE-GLOBAL",))
    add("legacy-torch-evil", legacy_torch_file(P2_GLOBAL), dangerous, "model.pt")
    # raw pickles named like something else
    add("named-safetensors", P2_GLOBAL, dangerous, "model.safetensors")
    add("named-config-json", P0_GLOBAL, dangerous, "config.json")
    add("named-readme", P4_STACK_GLOBAL, dangerous, "README.md")
    add("named-tokenizer-model", P2_GLOBAL, dangerous, "tokenizer.model")
    long_p0 = b"(S'" + b"a" * 70000 + b"'\np0\n0" + P0_GLOBAL
    add("p0-longer-than-head", long_p0, dangerous, "weights.bin")
    add("gzip-pickle", gzip.compress(P2_GLOBAL), dangerous, "model.joblib.gz")

    # torch archives and zip tricks
    add("torch-zip-evil", torch_zip(P2_GLOBAL), dangerous)
    add("torch-zip-nested-pkl", torch_zip(HONEST_DATA_PKL, extra=[Member("archive/extra.pkl", P0_GLOBAL)]),
        dangerous)
    add("zip-local-name-differs", torch_zip(HONEST_DATA_PKL, extra=[
        Member("archive/notes.txt", P2_GLOBAL, local_name="archive/evil.pkl")]), ("ZIP-HEADER-MISMATCH",))
    add("zip-duplicate-data-pkl", raw_zip([Member("archive/data.pkl", HONEST_DATA_PKL),
                                           Member("archive/data.pkl", P2_GLOBAL),
                                           Member("archive/version", b"3\n")]), ("ZIP-DUPLICATE",))
    add("zip-bad-crc", torch_zip(HONEST_DATA_PKL, extra=[Member("archive/byteorder", b"little", crc=0xDEADBEEF)]),
        ("ZIP-CRC",))
    add("zip-hidden-gap", torch_zip(HONEST_DATA_PKL, extra=[Member("archive/byteorder", b"little",
                                                                  gap_before=P2_GLOBAL)]), ("ZIP-GAP",))
    add("zip-prefix-polyglot", torch_zip(HONEST_DATA_PKL, prefix=b"\x00\x01binary junk" * 8), ("ZIP-PREFIX",))
    add("zip-prefix-unfixed", torch_zip(HONEST_DATA_PKL, prefix=b"\x00\x01binary junk" * 8, fix_offsets=False),
        ("ZIP-PREFIX",))
    add("zip-pickle-prefix", torch_zip(HONEST_DATA_PKL, prefix=P2_GLOBAL), dangerous)
    add("zip-encrypted-flag", torch_zip(HONEST_DATA_PKL, extra=[Member("archive/byteorder", b"little", flags=1)]),
        ("ZIP-FLAGS",))
    add("torchscript-code", raw_zip([Member("archive/data.pkl", HONEST_DATA_PKL),
                                     Member("archive/constants.pkl", b"\x80\x02)."),
                                     Member("archive/code/__torch__.py", b"def forward(self):\n  return 1\n"),
                                     Member("archive/version", b"3\n")]), ("TORCHSCRIPT-CODE",), "model.pt")
    add("zip-member-evil-by-content", raw_zip([Member("weights/readme.txt", P2_GLOBAL)]), dangerous, "bundle.zip")
    add("zip-in-zip", raw_zip([Member("inner.zip", raw_zip([Member("w.bin", P2_GLOBAL)]))]), dangerous, "outer.zip")
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w") as tf:
        for name, data in (("../escape.bin", b"x"), ("model/weights.bin", P2_GLOBAL)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    add("tar-traversal-and-pickle", tar_buf.getvalue(), ("ARCHIVE-PATH",), "model.tar")

    # numpy
    add("npy-object-array", _npy("|O", (1,), P2_GLOBAL), dangerous, "array.npy")
    add("npz-object-array", raw_zip([Member("arr_0.npy", _npy("|O", (1,), P4_STACK_GLOBAL))]), dangerous,
        "arrays.npz")

    # Keras
    add("keras-v3-lambda", raw_zip([Member("config.json", json.dumps(_keras3_lambda_config()).encode()),
                                    Member("metadata.json", b'{"keras_version": "3.3.3"}'),
                                    Member("model.weights.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)]),
        ("KERAS-LAMBDA",), "model.keras")
    h5 = _h5(root / "keras-h5-lambda" / "model.h5", _keras_lambda_config())
    if h5 is not None:
        s.append(Sample("keras-h5-lambda", h5, ("KERAS-LAMBDA",)))

    # chat templates
    for name, tpl in TEMPLATE_INJECTIONS.items():
        s.append(Sample(f"template-{name}", _write(root / f"template-{name}" / "tokenizer_config.json",
                                                    json.dumps({"chat_template": tpl})),
                        ("TEMPLATE-DUNDER", "TEMPLATE-ATTR-FILTER", "TEMPLATE-GLOBAL", "TEMPLATE-IMPORT",
                         "TEMPLATE-REFLECTION")))
    s.append(Sample("template-jinja-file", _write(root / "template-jinja-file" / "chat_template.jinja",
                                                  TEMPLATE_INJECTIONS["cycler-globals"]), ("TEMPLATE-DUNDER",)))
    s.append(Sample("template-list-form", _write(root / "template-list-form" / "tokenizer_config.json", json.dumps(
        {"chat_template": [{"name": "default", "template": "{{ messages[0]['content'] }}"},
                           {"name": "tool_use", "template": TEMPLATE_INJECTIONS["lipsum-globals"]}]})),
        ("TEMPLATE-GLOBAL", "TEMPLATE-DUNDER")))
    gg_tpl = gguf_bytes([("general.architecture", 8, gguf_string_value("llama")),
                         ("tokenizer.chat_template", 8, gguf_string_value(TEMPLATE_INJECTIONS["mro-subclasses"]))],
                        [("w", [32], 0, 0)], b"\x00" * 128)
    add("gguf-template-injection", gg_tpl, ("TEMPLATE-DUNDER",), "model.gguf")

    # remote code
    evil_py = ("import os\nimport subprocess\nfrom transformers import PreTrainedModel\n\n"
               "subprocess.run(['true'])\n\nclass EvilModel(PreTrainedModel):\n    pass\n")
    s.append(Sample("auto-map-remote-code", _folder(root, "auto-map-remote-code", {
        "config.json": json.dumps({"model_type": "llama", "auto_map": {"AutoModelForCausalLM":
                                                                       "modeling_evil.EvilModel"}}),
        "modeling_evil.py": evil_py}), ("CODE-AUTO-MAP", "CODE-IMPORT", "CODE-EXEC")))
    s.append(Sample("auto-map-other-repo", _folder(root, "auto-map-other-repo", {
        "tokenizer_config.json": json.dumps({"auto_map": {"AutoTokenizer": ["evil/repo--tokenization_x.Tok", None]}})}),
        ("CODE-AUTO-MAP-REMOTE",)))
    s.append(Sample("python-disguised-as-text", _write(root / "python-disguised-as-text" / "notes.txt",
                                                       "__import__('os').system('true')\n"), ("CODE-EXEC",)))

    # safetensors headers that lie
    f32 = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    st_cases: dict[str, tuple[bytes, tuple[str, ...]]] = {
        "overlap": (safetensors_bytes({"a": f32, "b": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]}},
                                      b"\x00" * 24), ("SAFETENSORS-OVERLAP",)),
        "out-of-bounds": (safetensors_bytes({"a": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}},
                                            b"\x00" * 16), ("SAFETENSORS-BOUNDS",)),
        "dtype-shape-mismatch": (safetensors_bytes({"a": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 16]}},
                                                   b"\x00" * 16), ("SAFETENSORS-SIZE",)),
        "duplicate-keys": (safetensors_bytes('{"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, '
                                             '"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}',
                                             b"\x00" * 16), ("SAFETENSORS-DUPLICATE",)),
        "header-longer-than-file": (safetensors_bytes({"a": f32}, b"\x00" * 16, header_len=1 << 20),
                                    ("SAFETENSORS-HEADER",)),
        "unknown-dtype": (safetensors_bytes({"a": {"dtype": "Q99", "shape": [4], "data_offsets": [0, 16]}},
                                            b"\x00" * 16), ("SAFETENSORS-DTYPE",)),
        "bad-metadata": (safetensors_bytes({"__metadata__": {"format": {"nested": 1}}, "a": f32}, b"\x00" * 16),
                         ("SAFETENSORS-METADATA",)),
        "hidden-trailing-bytes": (safetensors_bytes({"a": f32}, b"\x00" * 16 + P2_GLOBAL), ("SAFETENSORS-GAP",)),
        "invalid-json": (safetensors_bytes('{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]',
                                           b"\x00" * 16),
                         ("SAFETENSORS-HEADER",)),
        "negative-shape": (safetensors_bytes({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}},
                                             b"\x00" * 16), ("SAFETENSORS-HEADER",)),
    }
    for name, (data, rules) in st_cases.items():
        add(f"safetensors-{name}", data, rules, "model.safetensors")

    # GGUF headers that lie
    arch = ("general.architecture", 8, gguf_string_value("llama"))
    gg_cases: dict[str, tuple[bytes, tuple[str, ...]]] = {
        "tensor-beyond-data": (gguf_bytes([arch], [("w", [1024, 1024], 0, 0)], b"\x00" * 64), ("GGUF-TENSOR-BOUNDS",)),
        "absurd-string-length": (gguf_bytes([arch], [], b"", key_len=1 << 60), ("GGUF-STRING",)),
        "bad-value-type": (gguf_bytes([("general.architecture", 99, b"\x00" * 8)], [], b""), ("GGUF-TYPE",)),
        "bad-tensor-type": (gguf_bytes([arch], [("w", [32], 999, 0)], b"\x00" * 128), ("GGUF-TYPE",)),
        "bad-alignment": (gguf_bytes([arch, ("general.alignment", 4, struct.pack("<I", 3))], [("w", [8], 0, 0)],
                                     b"\x00" * 64), ("GGUF-ALIGNMENT",)),
        "misaligned-offset": (gguf_bytes([arch], [("a", [8], 0, 0), ("b", [8], 0, 33)], b"\x00" * 128),
                              ("GGUF-ALIGNMENT",)),
        "absurd-kv-count": (gguf_bytes([arch], [], b"", n_kv=1 << 40), ("GGUF-HEADER",)),
        "too-many-dims": (gguf_bytes([arch], [("w", [2] * 9, 0, 0)], b"\x00" * 4096), ("GGUF-TENSOR-BOUNDS",)),
        "overlapping-tensors": (gguf_bytes([arch], [("a", [32], 0, 0), ("b", [32], 0, 64)], b"\x00" * 256),
                                ("GGUF-OVERLAP",)),
        "huge-array-count": (gguf_bytes([("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 1 << 50))], [], b""),
                             ("GGUF-HEADER",)),
        "duplicate-key": (gguf_bytes([arch, arch], [], b""), ("GGUF-DUPLICATE",)),
        "vocab-string-too-long": (gguf_bytes([("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 2) + _gs("a")
                                               + struct.pack("<Q", 1 << 40) + b"b")], [], b""), ("GGUF-STRING",)),
    }
    for name, (data, rules) in gg_cases.items():
        add(f"gguf-{name}", data, rules, "model.gguf")

    # everything else
    elf = b"\x7fELF\x02\x01\x01" + b"\x00" * 57 + b"\x00" * 64
    add("elf-shared-object", elf, ("EXEC-BINARY",), "libcustom_ops.so")
    add("shell-script", "#!/bin/sh\ntrue\n", ("SCRIPT",), "setup.sh")
    link_dir = root / "symlink-outside"
    link_dir.mkdir(parents=True, exist_ok=True)
    _write(link_dir / "config.json", "{}")
    target = root / "outside-target.bin"
    _write(target, b"\x00" * 16)
    if not (link_dir / "model.safetensors").is_symlink():
        os.symlink(target, link_dir / "model.safetensors")
    s.append(Sample("symlink-outside", link_dir, ("SYMLINK-OUTSIDE",)))

    # what cannot be verified is never clean
    add("unknown-binary", b"\x00\x01\x02\x03" * 64, (), "weights.bin", verdict="unverified")
    add("seven-zip", b"7z\xbc\xaf\x27\x1c" + b"\x00" * 64, (), "model.7z", verdict="unverified")
    add("truncated-pickle-no-call", P2_GLOBAL[:12], (), "pytorch_model.bin", verdict="unverified")
    add("template-does-not-parse", json.dumps({"chat_template": "{% for x in %}"}), (), "tokenizer_config.json",
        verdict="unverified")
    add("gguf-version-1", b"GGUF" + struct.pack("<IIIQ", 1, 0, 0, 0) + b"\x00" * 16, (), "model.gguf",
        verdict="unverified")
    return s
