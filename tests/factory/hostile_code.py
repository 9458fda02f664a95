"""Hostile chat templates and remote-code folders whose payloads really run, built in code.

Every payload is harmless: it creates a marker file whose path the caller chooses. Tests first run the real
consumer in a throwaway subprocess (a plain ``jinja2.Environment`` for templates, as older llama-cpp-python
used; transformers ``from_pretrained(..., trust_remote_code=True)`` for code) and check the marker appears, then
check that assay flags the sample without running anything.

    >>> tpl = template_attacks("/tmp/marker")["concat-tilde"]
    >>> folder = custom_generate_folder(tmp_path / "m", "/tmp/marker", base=tiny_model_dir)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

# ----------------------------------------------------------------------------------------------- chat templates

#: ``os`` of jinja2.utils, reached from the ``cycler`` global: ``{obj}`` is replaced by each spelling of the path.
_VIA_CYCLER = "{{{{ {path}.os.system({cmd}) }}}}"


def template_attacks(marker: str | os.PathLike[str]) -> dict[str, str]:
    """Templates, by construction name, that create ``marker`` when rendered in a plain ``jinja2.Environment``."""
    cmd = repr(f"touch {os.fspath(marker)}")
    exec_src = repr(f"import os; os.system({cmd})")

    def cyc(path: str) -> str:
        return _VIA_CYCLER.format(path=path, cmd=cmd)

    return {
        # direct spellings
        "dunder-attribute": cyc("cycler.__init__.__globals__"),
        "dunder-item": cyc("cycler['__init__']['__globals__']"),
        "attr-filter": cyc("(cycler|attr('__init__')|attr('__globals__'))"),
        "map-attr": cyc("([cycler]|map('attr', '__init__')|map('attr', '__globals__')|first)"),
        "map-attribute-dotted": cyc("([cycler]|map(attribute='__init__.__globals__')|first)"),
        "lipsum-global": cyc("lipsum.__globals__"),
        "namespace-global": cyc("namespace.__init__.__globals__"),
        "joiner-global": cyc("joiner.__init__.__globals__"),
        "self-context": cyc("self._TemplateReference__context.cycler.__init__.__globals__"),
        # constructed keys: folded from literal pieces
        "concat-tilde": cyc("cycler['__in' ~ 'it__']['__glo' ~ 'bals__']"),
        "concat-plus-set": "{% set a = '__in' %}{% set b = 'it__' %}{% set g = '__glob' + 'als__' %}"
                           + cyc("cycler[a ~ b][g]"),
        "string-times": "{% set u = '_' * 2 %}" + cyc("cycler[u ~ 'init' ~ u][u ~ 'globals' ~ u]"),
        "percent-tuple": cyc("cycler['%sinit%s' % ('__', '__')]['%sglobals%s' % ('__', '__')]"),
        "percent-chars": cyc("cycler['%c%cinit%c%c' % (95, 95, 95, 95)]['%c%cglobals%c%c' % (95, 95, 95, 95)]"),
        "format-filter": cyc("cycler['%sinit%s'|format('__', '__')]['%sglobals%s'|format('__', '__')]"),
        "join-filter": cyc("cycler[['__', 'init', '__']|join][['__', 'globals', '__']|join]"),
        "replace-filter": cyc("cycler['XXinitXX'|replace('X', '_')]['XXglobalsXX'|replace('X', '_')]"),
        "reverse-filter": cyc("cycler['__tini__'|reverse]['__slabolg__'|reverse]"),
        "dict-keyword": "{% set i = dict(__init__=1)|first %}{% set g = dict(__globals__=1)|first %}"
                        + cyc("cycler[i][g]"),
        # constructed keys: not foldable, still built by the template
        "str-format-method": cyc("cycler['{0}init{0}'.format('__')]['{0}globals{0}'.format('__')]"),
        "percent-computed": "{% set u = ('%c' % (messages|length * 0 + 95)) * 2 %}"
                            + cyc("cycler[u ~ 'init' ~ u][u ~ 'globals' ~ u]"),
        "endset-block": "{% set i %}__init__{% endset %}{% set g %}__globals__{% endset %}" + cyc("cycler[i][g]"),
        "macro-output": "{% macro i() %}__init__{% endmacro %}{% macro g() %}__globals__{% endmacro %}"
                        + cyc("cycler[i()][g()]"),
        "namespace-value": "{% set ns = namespace(i='__init__', g='__globals__') %}" + cyc("cycler[ns.i][ns.g]"),
        "loop-unpacking": "{% for i, g in [('__init__', '__globals__')] %}" + cyc("cycler[i][g]") + "{% endfor %}",
        "center-filter": "{% set u = ('_'|center(1)) * 2 %}" + cyc("cycler[u ~ 'init' ~ u][u ~ 'globals' ~ u]"),
        # no underscore at all: a generator's frame and the builtins dict
        "generator-frame": "{{ (messages|map('string')).gi_frame.f_builtins.exec(" + exec_src + ") }}",
    }


def render_plain(template: str) -> str:
    """Python source that renders ``template`` in a plain Jinja2 environment (run it in a subprocess)."""
    return ("import jinja2\n"
            f"t = jinja2.Environment().from_string({template!r})\n"
            "try:\n"
            "    t.render(messages=[{'role': 'user', 'content': 'hi'}], add_generation_prompt=True)\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__, exc)\n")


# ----------------------------------------------------------------------------------------------- remote code

_GENERATE = """\
import os

os.system({cmd})


def generate(model, *args, **kwargs):
    return model
"""


def custom_generate_folder(folder: Path, marker: str | os.PathLike[str], *, base: Path) -> Path:
    """A copy of the model at ``base`` with ``custom_generate/generate.py`` (no ``auto_map`` anywhere)."""
    shutil.copytree(base, folder)
    (folder / "custom_generate").mkdir()
    (folder / "custom_generate" / "generate.py").write_text(_GENERATE.format(cmd=repr(f"touch {marker}")))
    return folder


def custom_generate_symlink_into_git(folder: Path, marker: str | os.PathLike[str], *, base: Path) -> Path:
    """``custom_generate`` is a link into ``.git/``, whose files the scanner does not otherwise read."""
    shutil.copytree(base, folder)
    hidden = folder / ".git" / "hooks-data"
    hidden.mkdir(parents=True)
    (hidden / "generate.py").write_text(_GENERATE.format(cmd=repr(f"touch {marker}")))
    os.symlink(os.path.join(".git", "hooks-data"), folder / "custom_generate")
    return folder


def custom_generate_relative_import(folder: Path, marker: str | os.PathLike[str], *, base: Path) -> Path:
    """``generate.py`` is harmless; the module it imports relatively (``from .helpers import run``) runs the
    payload, and is reached through a link to a file named like data (``helpers.py -> ../notes.md``)."""
    shutil.copytree(base, folder)
    (folder / "custom_generate").mkdir()
    (folder / "custom_generate" / "generate.py").write_text(
        "from .helpers import run\n\n\ndef generate(model, *args, **kwargs):\n    return model\n")
    (folder / "notes.md").write_text("#!/usr/bin/env python3\n# Notes\nimport os\nos.system("
                                     + repr(f"touch {marker}") + ")\n\n\ndef run():\n    pass\n")
    os.symlink(os.path.join("..", "notes.md"), folder / "custom_generate" / "helpers.py")
    return folder


def custom_generate_link_outside(folder: Path, outside: Path, marker: str | os.PathLike[str], *,
                                 base: Path) -> Path:
    """``custom_generate`` is a link to a folder outside the model."""
    shutil.copytree(base, folder)
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "generate.py").write_text(_GENERATE.format(cmd=repr(f"touch {marker}")))
    os.symlink(outside, folder / "custom_generate")
    return folder


def auto_map_module_symlink(folder: Path, marker: str | os.PathLike[str], *, base: Path) -> Path:
    """``auto_map`` names ``modeling_evil.py``, which is a link to a file with another name inside the folder."""
    shutil.copytree(base, folder)
    (folder / "notes.txt").write_text(
        "import os\nos.system(" + repr(f"touch {marker}") + ")\n"
        "from transformers import LlamaForCausalLM\n\n\nclass EvilModel(LlamaForCausalLM):\n    pass\n")
    os.symlink("notes.txt", folder / "modeling_evil.py")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder
