"""Chat templates: stock templates are proved safe; every hostile construction runs in a plain Jinja2 environment
and is flagged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from assay.model.ref import resolve
from assay.scan import scan_model
from assay.scan.context import FileScan, ScanOptions
from assay.scan.templates import scan_template_text
from tests.factory.hostile_code import render_plain, template_attacks

TEMPLATES = Path(__file__).parent / "data" / "templates"
REAL = [
    "llama-3.1-8b-instruct", "llama-3.3-70b-instruct", "llama-3.2-3b-instruct", "llama-3.2-11b-vision-instruct",
    "qwen2.5-7b-instruct", "qwen3-0.6b", "gemma-2-2b-it", "gemma-3-1b-it", "mistral-7b-instruct-v0.3",
    "mistral-nemo-instruct-2407", "mistral-small-24b", "deepseek-v3", "deepseek-r1", "phi-3-mini", "phi-3.5-mini",
    "phi-4", "phi-4-mini", "hermes-2-pro-llama-3-8b-tool-use", "hermes-3-llama-3.1", "smollm2-135m"
]
ACCESS_RULES = {"TEMPLATE-DUNDER", "TEMPLATE-COMPUTED-NAME", "TEMPLATE-ATTR-FILTER", "TEMPLATE-REFLECTION",
                "TEMPLATE-GLOBAL"}


def _scan(text: str) -> FileScan:
    fs = FileScan("tokenizer_config.json", ScanOptions())
    scan_template_text(text, fs, where="chat_template")
    return fs


@pytest.mark.parametrize("name", REAL)
def test_real_stock_templates_are_proved_safe(name: str) -> None:
    fs = _scan((TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8"))
    assert fs.findings == [] and fs.reasons == []


def test_real_stock_templates_render_in_transformers_sandbox() -> None:
    """The corpus is real: each template renders a conversation with transformers' own chat-template code."""
    from transformers.utils.chat_template_utils import render_jinja_template

    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Bye"}]
    tool = {"type": "function", "function": {"name": "get_time", "description": "The time.", "parameters": {
        "type": "object", "properties": {"zone": {"type": "string", "description": "Time zone."}},
        "required": ["zone"]}}}
    for name in REAL:
        text = (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")
        out, _ = render_jinja_template([chat], chat_template=text, add_generation_prompt=True, bos_token="<s>",
                                       eos_token="</s>", tools=[tool] if "tool-use" in name else None)
        assert "Bye" in out[0], name


@pytest.mark.parametrize("name", sorted(template_attacks("/x")))
def test_hostile_template_runs_in_plain_jinja_and_is_flagged(name: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    template = template_attacks(marker)[name]
    proc = subprocess.run([sys.executable, "-c", render_plain(template)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert marker.exists(), f"payload did not run: {proc.stdout} {proc.stderr}"
    rules = {f.rule for f in _scan(template).findings}
    # the access itself is named, not just the final os.system call
    assert rules & ACCESS_RULES, rules


@pytest.mark.parametrize("key", [
    "'_' * 2 ~ 'class' ~ '_' * 2", "'%sclass%s' % ('__', '__')", "'{0}class{0}'.format('__')",
    "dict(__class__=1)|first", "k", "['_', '_', 'class', '_', '_']|join", "'..class..'|replace('.', '_')",
    "messages[0].role ~ 'x'", "('%c' % 95) * 2", "'x'|center(5)", "ns.k", "m()",
    "ns.s[1:]", "ns.s|reverse", "(ns.s|list)[1] ~ (ns.s|list)[1]", "ns.s.split('a')[1]", "ns.s|trim('a')",
])
def test_constructed_keys_are_findings_without_any_call(key: str) -> None:
    prefix = "{% set k %}__class__{% endset %}{% set ns = namespace(k='__class__', s='a__class__') %}" \
             "{% macro m() %}__class__{% endmacro %}"
    rules = {f.rule for f in _scan(prefix + "{{ messages[" + key + "] }}").findings}
    assert rules & {"TEMPLATE-DUNDER", "TEMPLATE-COMPUTED-NAME", "TEMPLATE-METHOD"}, (key, rules)


@pytest.mark.parametrize("template", [
    "{{ messages[0]['content'] }}", "{{ messages[loop_index - 1] if loop_index else '' }}",
    "{% for m in messages %}{{ messages[loop.index0 + 1].role if not loop.last }}{% endfor %}",
    "{% set k = 'con' ~ 'tent' %}{{ messages[0][k] }}", "{{ messages[-1]['content'].strip().split('x')[0] }}",
    "{% set ns = namespace(found=false) %}{% for m in messages %}{% set ns.found = true %}{% endfor %}{{ ns.found }}",
    "{{ (messages|selectattr('role', 'equalto', 'user')|list|last).content }}",
    "{% set t = {'string': 'str', 'number': 'float'} %}{% if t[tools[0].type] is defined %}{{ t[tools[0].type] }}"
    "{% endif %}",
    "{% for k in tools[0].keys()|reject('in', ['type']) %}{{ tools[0][k] }}{% endfor %}",
    "{% for k, v in tools[0]|items %}{{ tools[0][k] }}{% endfor %}",
    "{% set ns = namespace(last_index=-1) %}{% for i in range(messages|length) %}{% set ns.last_index = i %}"
    "{% endfor %}{{ messages[:ns.last_index + 1] }}",
    "{% set k = 'tool_calls' %}{{ messages[0][k] }}",
])
def test_honest_constructions_pass(template: str) -> None:
    fs = _scan(template)
    assert fs.findings == [] and fs.reasons == []


@pytest.mark.parametrize("template, rule", [
    ("{{ messages.append(1) }}", "TEMPLATE-METHOD"),
    ("{{ messages[0].content.format(x=1) }}", "TEMPLATE-METHOD"),
    ("{{ messages[0].content.format_map({}) }}", "TEMPLATE-METHOD"),
    ("{{ messages.pop() }}", "TEMPLATE-METHOD"),
    ("{{ (messages|map('string')).gi_frame }}", "TEMPLATE-REFLECTION"),
    ("{{ messages[0]['mro'] }}", "TEMPLATE-REFLECTION"),
    ("{{ tools[0]() }}", "TEMPLATE-CALL"),
    ("{{ messages|attr(messages[0].role) }}", "TEMPLATE-ATTR-FILTER"),
    ("{{ messages|map(messages[0].role)|list }}", "TEMPLATE-ATTR-FILTER"),
    ("{{ messages|selectattr('_x')|list }}", "TEMPLATE-DUNDER"),
    ("{{ messages|sort(attribute='a.__class__') }}", "TEMPLATE-DUNDER"),
    ("{% set x = cycler %}", "TEMPLATE-GLOBAL"),
    ("{% set n = namespace %}", "TEMPLATE-GLOBAL"),
    ("{{ cycler[messages[0].content] }}", "TEMPLATE-DATA-KEY"),
    ("{% for k in messages[-1].content.split() %}{{ messages[k] }}{% endfor %}", "TEMPLATE-DATA-KEY"),
    ("{% set t = {'a': 'b'} %}{{ t[messages[0].content][messages[1].content] }}", "TEMPLATE-DATA-KEY"),
    ("{% set t = {'a': 'b'} %}{{ t[messages[0].content]() }}", "TEMPLATE-CALL"),
    ("{% for k in tools %}{{ tools[k] }}{% endfor %}", "TEMPLATE-DATA-KEY"),  # a list would fall back to getattr
])
def test_sandbox_refusals_are_findings(template: str, rule: str) -> None:
    assert rule in {f.rule for f in _scan(template).findings}


def test_unknown_filter_is_not_verified() -> None:
    fs = _scan("{{ messages|shell }}")
    assert fs.findings == [] and fs.reasons and "shell" in fs.reasons[0]


def test_every_attack_is_flagged_in_a_model_folder(tmp_path: Path) -> None:
    for i, template in enumerate(template_attacks(tmp_path / "never").values()):
        folder = tmp_path / f"m{i}"
        folder.mkdir()
        (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
        report = scan_model(resolve(str(folder)))
        assert report.verdict.value == "unsafe"
    assert not (tmp_path / "never").exists()


def test_oversized_template_is_not_verified_with_a_resource_limit() -> None:
    fs = _scan("{{ messages[0]['content'] }}" * 20_000)
    assert fs.findings == [] and "resource limit" in fs.reasons[0]


def test_reverse_dependency_chain_reaches_the_fixed_point() -> None:
    # v0 <- v1 <- ... <- v40 <- a built string: every link must be followed, whatever the source order
    chain = "".join(f"{{% set v{i} = v{i + 1} %}}" for i in range(40))
    fs = _scan(chain + "{% set v40 %}__class__{% endset %}{{ messages[v0] }}")
    assert "TEMPLATE-COMPUTED-NAME" in {f.rule for f in fs.findings} or fs.reasons
