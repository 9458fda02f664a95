"""The test factory: tiny models for assay's tests, built in code and never committed.

`models` holds everything: `tiny_tokenizer()` trains a small byte-level BPE tokenizer, `build_model()`
makes a seeded random Llama, and the `save_*` functions write it as a safetensors folder (single or
sharded), a torch `.bin` folder, a legacy pickle, a GGUF file (F32/F16/Q8_0) or a PEFT LoRA adapter.
`build_zoo(root)` does all of it once and returns a `Zoo` of paths; tests get it from the session
fixtures `zoo` and `tiny_model_dir` in tests/conftest.py.

    from tests.factory.models import build_model, save_gguf, tiny_tokenizer
    path = save_gguf(build_model(seed=1), tiny_tokenizer(), tmp_path / "m.gguf", qtype="Q8_0")
"""
