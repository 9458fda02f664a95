"""The licence table and licence policy checks."""

from __future__ import annotations

import pytest

from assay.deploy.licences import all_licences, card_licence, check_licence, guess_licence_from_name, lookup
from assay.errors import DeployError

REQUIRED = ["apache-2.0", "mit", "bsd-3-clause", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0",
            "gpl-3.0", "agpl-3.0", "openrail", "openrail++", "creativeml-openrail-m", "bigscience-openrail-m",
            "bigscience-bloom-rail-1.0", "llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4", "gemma",
            "qwen", "qwen-research", "mrl", "deepseek", "falcon-llm-license"]


def test_table_has_every_licence_the_issue_names() -> None:
    table = all_licences()
    assert not [lid for lid in REQUIRED if lid not in table]
    for lic in table.values():
        assert lic.name and lic.url.startswith("https://")
        assert lic.commercial_use in ("yes", "no", "conditional")
        if lic.mau_cap is not None:
            assert lic.mau_clause, lic.id
        if lic.derivatives_keep_licence:
            assert lic.derivatives_clause, lic.id
        for other in lic.compatible:
            assert other in table, (lic.id, other)


def test_llama_terms() -> None:
    for lid in ("llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4"):
        lic = lookup(lid)
        assert lic is not None and lic.mau_cap == 700_000_000 and "Section 2" in lic.mau_clause
        assert lic.acceptable_use_policy and lic.derivatives_keep_licence
    assert lookup("llama3").naming_prefix == "Llama 3"
    assert lookup("llama3.1").naming_prefix == "Llama"
    assert "Built with Llama" in lookup("llama3.1").attribution
    assert lookup("qwen").mau_cap == 100_000_000
    assert lookup("cc-by-nc-4.0").commercial_use == "no"
    assert lookup("apache-2.0").permissive and not lookup("apache-2.0").derivatives_keep_licence


def test_lookup_folds_case_and_aliases() -> None:
    assert lookup("Apache-2.0").id == "apache-2.0"
    assert lookup("tongyi-qianwen").id == "qwen"
    assert lookup("Mistral Research License").id == "mrl"
    assert lookup("no-such-licence") is None
    assert card_licence("other", "qwen-research") == "qwen-research"
    assert card_licence(["MIT"]) == "mit"
    assert card_licence(None) is None


@pytest.mark.parametrize("name, licence", [
    ("meta-llama/Llama-3.1-8B-Instruct", "llama3.1"), ("meta-llama/Meta-Llama-3-8B", "llama3"),
    ("meta-llama/Llama-2-7b-hf", "llama2"), ("meta-llama/Llama-3.2-1B", "llama3.2"),
    ("google/gemma-2-2b", "gemma"), ("Qwen/Qwen2.5-3B", "qwen-research"), ("Qwen/Qwen2.5-72B-Instruct", "qwen"),
    ("Qwen/Qwen2.5-7B", "apache-2.0"), ("mistralai/Mistral-Large-Instruct-2407", "mrl"),
    ("mistralai/Mistral-7B-v0.1", "apache-2.0"), ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"),
])
def test_base_model_name_heuristic(name: str, licence: str) -> None:
    guess = guess_licence_from_name(name)
    assert guess is not None and guess[0] == licence
    assert guess_licence_from_name("someone/homemade-model") is None


def test_mau_cap_is_a_violation_with_the_clause() -> None:
    [v] = check_licence("llama3.1", monthly_active_users=800_000_000)
    assert v.rule == "LICENCE-MAU-CAP" and v.severity == "fail"
    assert "Section 2" in v.clause and "700,000,000" in v.message
    assert check_licence("llama3.1", monthly_active_users=1_000_000) == []
    assert [v.rule for v in check_licence("qwen", monthly_active_users=150_000_000)] == ["LICENCE-MAU-CAP"]
    assert check_licence("apache-2.0", monthly_active_users=10**10) == []


def test_allow_and_deny_lists() -> None:
    assert [v.rule for v in check_licence("cc-by-nc-4.0", deny=["cc-by-nc*"])] == ["LICENCE-DENIED"]
    assert [v.rule for v in check_licence("llama3.1", allow=["apache-2.0", "mit"])] == ["LICENCE-NOT-ALLOWED"]
    assert check_licence("MIT", allow=["kind:permissive"]) == []
    assert [v.rule for v in check_licence("mrl", deny=["kind:research"])] == ["LICENCE-DENIED"]
    assert [v.rule for v in check_licence("cc-by-nc-4.0", commercial=True)] == ["LICENCE-NON-COMMERCIAL"]
    missing = check_licence(None, allow=["apache-2.0"])
    assert missing[0].rule == "LICENCE-MISSING" and missing[0].severity == "fail"
    assert check_licence(None)[0].severity == "warn"
    unknown = check_licence("my-own-licence")
    assert [v.rule for v in unknown] == ["LICENCE-UNKNOWN"] and unknown[0].severity == "warn"
    with pytest.raises(DeployError):
        check_licence("mit", allow=["kind:nonsense"])
