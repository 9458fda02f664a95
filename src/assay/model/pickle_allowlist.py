"""Which pickle globals an honest checkpoint needs (default deny), and which are known to be dangerous.

A global is accepted only if its exact ``module.qualname`` is in :data:`ALLOWED_GLOBALS` (or the user adds it
with ``--allow-global``). The list follows ``torch._weights_only_unpickler`` (tensor and storage rebuilds, dtypes,
``torch.Size``, ``torch.device``, ``collections.OrderedDict``, ``_codecs.encode``), numpy array reconstruction
(numeric dtypes only, checked by :mod:`assay.model.pickle_vm`), and the honest classes and enums that
``transformers.TrainingArguments`` pickles into ``training_args.bin``. ``docs/rules.md`` lists them.

    >>> is_allowed("torch._utils._rebuild_tensor_v2")
    True
    >>> danger_of("os.system")
    'runs a shell command'
"""

from __future__ import annotations

_STORAGE_ELEMENT_SIZE: dict[str, int] = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
    "ComplexDoubleStorage": 16, "ComplexFloatStorage": 8, "QInt8Storage": 1, "QUInt8Storage": 1,
    "QInt32Storage": 4, "QUInt4x2Storage": 1, "QUInt2x4Storage": 1,
    # torch >= 2.1 storage types for the new dtypes
    "Float8_e4m3fnStorage": 1, "Float8_e5m2Storage": 1, "Float8_e4m3fnuzStorage": 1, "Float8_e5m2fnuzStorage": 1,
    "UInt16Storage": 2, "UInt32Storage": 4, "UInt64Storage": 8,
}

_TENSOR_TYPES = ["DoubleTensor", "FloatTensor", "HalfTensor", "BFloat16Tensor", "LongTensor", "IntTensor",
                 "ShortTensor", "CharTensor", "ByteTensor", "BoolTensor"]

_DTYPES = ["float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
           "complex128", "complex64", "complex32", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
           "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2", "uint16", "uint32", "uint64",
           "qint8", "quint8", "qint32", "quint4x2", "quint2x4", "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16",
           *(f"uint{i}" for i in range(1, 8)), *(f"int{i}" for i in range(1, 8)),
           # float aliases as pickled by older torch versions
           "double", "float", "half", "long", "int", "short", "cfloat", "cdouble"]

_TORCH_REBUILDS = ["_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                   "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor",
                   "_rebuild_meta_tensor_no_storage", "_rebuild_nested_tensor", "_rebuild_wrapper_subclass",
                   "_rebuild_device_tensor_from_numpy", "_rebuild_device_tensor_from_cpu_tensor"]

#: What ``training_args.bin`` (``torch.save(TrainingArguments)``) holds: plain dataclasses and enums whose
#: unpickling only sets attributes; none defines ``__reduce__``/``__setstate__`` that runs code.
TRAINING_ARGS_GLOBALS: tuple[str, ...] = (
    "transformers.training_args.TrainingArguments",
    "transformers.training_args_seq2seq.Seq2SeqTrainingArguments",
    "transformers.training_args.OptimizerNames",
    "transformers.training_args.ParallelMode",
    "transformers.trainer_utils.IntervalStrategy",
    "transformers.trainer_utils.SaveStrategy",
    "transformers.trainer_utils.HubStrategy",
    "transformers.trainer_utils.SchedulerType",
    "transformers.trainer_utils.EvaluationStrategy",
    "transformers.trainer_utils.FSDPOption",
    "transformers.debug_utils.DebugOption",
    "transformers.trainer_pt_utils.AcceleratorConfig",
    "accelerate.utils.dataclasses.DistributedType",
    "accelerate.state.PartialState",
    "transformers.generation.configuration_utils.GenerationConfig",  # Seq2SeqTrainingArguments.generation_config
    # TRL's trainer configs are TrainingArguments subclasses (plain dataclasses), saved the same way
    "trl.trainer.sft_config.SFTConfig",
    "trl.trainer.dpo_config.DPOConfig",
    "trl.trainer.dpo_config.FDivergenceType",
    "trl.trainer.grpo_config.GRPOConfig",
    "trl.trainer.reward_config.RewardConfig",
    "trl.trainer.orpo_config.ORPOConfig",
    "trl.trainer.kto_config.KTOConfig",
    "trl.trainer.cpo_config.CPOConfig",
)

#: Every global an honest checkpoint may reference.
ALLOWED_GLOBALS: frozenset[str] = frozenset({
    "collections.OrderedDict",
    "collections.Counter",
    "builtins.set",
    "builtins.frozenset",
    "builtins.bytearray",
    "builtins.complex",
    "builtins.slice",
    "_codecs.encode",  # bytes in protocol 0-2 pickles; arguments are checked
    "torch.Size",
    "torch.device",
    "torch.Tensor",
    "torch.nn.parameter.Parameter",
    "torch.serialization._get_layout",
    "torch.storage.TypedStorage",
    "torch.storage.UntypedStorage",
    "torch._tensor._rebuild_from_type_v2",
    "torch.per_tensor_affine", "torch.per_tensor_symmetric", "torch.per_channel_affine",
    "torch.per_channel_symmetric", "torch.per_channel_affine_float_qparams",
    "torch.strided", "torch.sparse_coo", "torch.sparse_csr", "torch.contiguous_format", "torch.channels_last",
    *(f"torch._utils.{f}" for f in _TORCH_REBUILDS),
    *(f"torch.{s}" for s in _STORAGE_ELEMENT_SIZE),
    *(f"torch.cuda.{s}" for s in _STORAGE_ELEMENT_SIZE),
    *(f"torch.{t}" for t in _TENSOR_TYPES),
    *(f"torch.cuda.{t}" for t in _TENSOR_TYPES),
    *(f"torch.{d}" for d in _DTYPES),
    # numpy arrays and scalars; numpy.dtype arguments are checked (numeric kinds only)
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.ndarray", "numpy.dtype",
    *TRAINING_ARGS_GLOBALS,
})

#: Loaders that deserialize a nested byte string: never allowlisted; their byte argument is scanned.
NESTED_LOADERS: frozenset[str] = frozenset({
    "torch.load", "torch.serialization.load", "torch.storage._load_from_bytes", "torch._utils._load_from_bytes",
    "torch.jit.load", "torch.jit._serialization.load",
    "pickle.loads", "pickle.load", "_pickle.loads", "_pickle.load", "pickle._loads", "pickle._load",
    "pickle.Unpickler", "_pickle.Unpickler", "dill.loads", "dill.load", "dill._dill.loads", "cloudpickle.loads",
    "cloudpickle.load", "joblib.load", "joblib.numpy_pickle.load", "numpy.load", "numpy.lib.npyio.load",
    "numpy.lib._npyio_impl.load", "pandas.read_pickle", "pandas.io.pickle.read_pickle", "marshal.loads",
    "shelve.open", "keras.models.load_model", "tensorflow.keras.models.load_model",
})

# Known-dangerous names, each with what it does; a module entry covers every name in it.
_DANGEROUS_MODULES: dict[str, str] = {
    "os": "reaches the operating system (processes, files, environment)",
    "posix": "reaches the operating system", "nt": "reaches the operating system",
    "subprocess": "runs a process", "pty": "spawns a process", "commands": "runs a shell command",
    "popen2": "runs a process", "asyncio.subprocess": "runs a process", "multiprocessing": "starts processes",
    "sys": "reaches the interpreter's state", "importlib": "imports arbitrary modules",
    "imp": "imports arbitrary modules", "runpy": "runs a module or a script", "code": "runs Python code",
    "codeop": "compiles Python code", "pydoc": "imports arbitrary objects (pydoc.locate)",
    "socket": "opens network connections", "ssl": "opens network connections", "http": "opens network connections",
    "urllib": "opens network connections", "requests": "opens network connections", "httpx": "network access",
    "ftplib": "network access", "smtplib": "network access", "telnetlib": "network access",
    "webbrowser": "opens a browser", "shutil": "copies, moves and deletes files", "tempfile": "creates files",
    "ctypes": "calls native code", "cffi": "calls native code", "_ctypes": "calls native code",
    "marshal": "loads code objects", "types": "builds functions and code objects", "pickle": "unpickles bytes",
    "_pickle": "unpickles bytes", "dill": "unpickles code", "cloudpickle": "unpickles code",
    "timeit": "runs Python code", "trace": "runs Python code", "pdb": "runs Python code", "bdb": "runs code",
    "profile": "runs Python code", "cProfile": "runs Python code", "signal": "changes process signal handling",
    "threading": "starts threads", "_thread": "starts threads", "gc": "reaches every live object",
    "inspect": "reaches frames and globals", "operator": "calls attribute getters (attrgetter/methodcaller chains)",
    "functools": "composes calls (partial, reduce)", "_operator": "calls attribute getters and operators",
    "_functools": "composes calls", "itertools": "composes calls (starmap)",
    "builtins.__dict__": "reaches every builtin", "platform": "runs a process (platform.popen)",
    "glob": "lists files", "pathlib": "reads and writes files", "io": "opens files", "_io": "opens files",
    "zipimport": "imports code", "site": "runs .pth files", "ensurepip": "installs packages", "pip": "installs",
    "venv": "creates environments", "distutils": "runs build commands", "setuptools": "runs build commands",
    "torch.hub": "downloads and runs code", "torch._dynamo": "compiles and runs code", "torch.jit": "runs code",
    "torch.ops": "calls native operators", "torch._ops": "calls native operators",
    "torch.utils.cpp_extension": "compiles native code", "numpy.testing": "runs code",
    "numpy.f2py": "compiles native code", "numpy.distutils": "runs build commands",
    "keras": "loads models and layers with code", "tensorflow": "runs graph code",
    "jinja2": "renders templates (code)", "yaml": "constructs arbitrary objects", "asyncio": "runs event loops",
    "email": "network access", "xmlrpc": "network access", "shelve": "unpickles files",
}
_DANGEROUS_BUILTINS: dict[str, str] = {
    "eval": "evaluates Python code", "exec": "executes Python code", "compile": "compiles Python code",
    "open": "opens files", "__import__": "imports arbitrary modules", "getattr": "reaches arbitrary attributes",
    "setattr": "changes arbitrary attributes", "delattr": "deletes attributes", "globals": "reaches globals",
    "locals": "reaches locals", "vars": "reaches namespaces", "input": "reads input", "breakpoint": "starts a debugger",
    "exit": "exits the interpreter", "quit": "exits the interpreter", "help": "imports arbitrary modules",
    "memoryview": "reaches raw memory", "type": "builds classes", "object": "reaches every class",
    "super": "reaches parent classes", "classmethod": "wraps functions", "staticmethod": "wraps functions",
    "property": "wraps functions", "print": "writes output", "dir": "reaches attributes",
    "map": "calls functions lazily", "filter": "calls functions lazily", "apply": "calls a function",
    "execfile": "executes a file", "reload": "reloads modules", "file": "opens files",
}


def is_allowed(full: str, extra: frozenset[str] | set[str] = frozenset()) -> bool:
    """True if the exact ``module.qualname`` is on the allowlist (defaults plus ``extra``)."""
    return full in ALLOWED_GLOBALS or full in extra


def danger_of(full: str) -> str | None:
    """A short reason if ``full`` is a known-dangerous name, else None (unknown is still denied)."""
    if full in NESTED_LOADERS:
        return "deserializes nested bytes"
    module, _, name = full.rpartition(".")
    if module in ("builtins", "__builtin__", "__builtins__") and name in _DANGEROUS_BUILTINS:
        return _DANGEROUS_BUILTINS[name]
    if "__" in full.replace("__builtin__", "").replace("__main__", ""):
        return "reaches Python internals through a dunder attribute"
    parts = full.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in _DANGEROUS_MODULES:
            return _DANGEROUS_MODULES[prefix]
    if module == "__main__":
        return "names code defined by whatever program loads it"
    return None


def storage_element_size(full: str) -> int | None:
    """Bytes per element of a torch storage type such as ``torch.FloatStorage`` (None if unknown)."""
    module, _, name = full.rpartition(".")
    if module not in ("torch", "torch.cuda"):
        return None
    return _STORAGE_ELEMENT_SIZE.get(name)


#: numpy dtype kinds that hold plain numbers, text or dates (never Python objects).
NUMERIC_DTYPE_KINDS = frozenset("biufcSUmM?")
