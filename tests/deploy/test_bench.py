"""Bench on the factory's tiny model: sane positive numbers and the document's structure."""

from __future__ import annotations

import json

import pytest

from assay.cli.main import main
from assay.deploy.bench import bench_document, run_bench
from assay.model.ref import resolve


def test_bench_cli_with_base_in_separate_processes(zoo, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", str(zoo.safetensors_dir), "--base", str(zoo.sharded_dir), "--prompt-tokens", "16",
               "--output-tokens", "4", "--batch-size", "1,2", "--repeats", "2", "--warmup", "1", "--threads", "1",
               "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    doc = json.loads(captured.out)
    assert doc["schema"] == "assay.bench/1" and doc["backend"] == "hf" and doc["base_url"] is None
    assert doc["settings"]["batch_sizes"] == [1, 2] and doc["settings"]["repeats"] == 2
    hw = doc["hardware"]
    assert hw["torch_threads"] == 1 and hw["cpu"] and hw["ram_bytes"] > 0 and "cores" in hw["description"]
    for who in ("candidate", "base"):
        m = doc[who]
        assert m["parameters"] == zoo.n_params
        assert m["load_s"] > 0 and m["ttft_s"] > 0
        assert m["prefill_tokens_per_s"] > 0 and m["decode_tokens_per_s"] > 0
        assert 0 < m["latency_p50_s"] <= m["latency_p95_s"]
        assert m["peak_rss_bytes"] >= m["rss_before_load_bytes"] > 0
        assert [b["batch_size"] for b in m["batches"]] == [1, 2]
        assert all(len(b["latencies_s"]) == 2 for b in m["batches"])
        assert m["prompt_tokens"] == 16 and m["prompt_length"] == "exact" and m["tokens_counted_by"] == "model"
        assert all(b["output_tokens_per_s"] > 0 for b in m["batches"])
        # The prefill pass must be a part of the whole request.
        assert all(b["ttft_s"] <= max(b["latencies_s"]) for b in m["batches"])
    # Identical weights: same size; the ratio of a figure to itself is reported for every headline figure.
    assert doc["ratios"]["parameters"] == 1.0
    assert {"decode_tokens_per_s", "ttft_s", "load_s", "model_rss_bytes"} <= set(doc["ratios"])
    fit = doc["fit"]
    assert fit["context"] == zoo.context_length and [e["bits"] for e in fit["estimates"]] == [16, 8, 4]
    # 2 (K, V) * 2 layers * 2 kv heads * 16 dims * 512 tokens * batch 2 * 2 bytes
    assert fit["estimates"][0]["kv_cache_bytes"] == 2 * 2 * 2 * 16 * 512 * 2 * 2
    assert all(d["fits"] for d in fit["devices"])


def test_bench_gguf_in_process_and_human_output(zoo, capsys: pytest.CaptureFixture[str]) -> None:
    report = run_bench(resolve(str(zoo.gguf_f32)), prompt_tokens=8, output_tokens=3, repeats=2, warmup=0,
                       threads=1, isolate=False)
    assert report.base is None and report.ratios == {}
    assert report.candidate.parameters == zoo.n_params
    assert report.candidate.decode_tokens_per_s > 0
    assert any("GGUF" in n for n in report.candidate.notes)
    doc = json.loads(json.dumps(bench_document(report)))
    assert doc["candidate"]["batches"][0]["repeats"] == 2
    from assay.cli.bench import render

    render(report)
    out = capsys.readouterr().out
    assert "decode tokens/s" in out and "Memory needed" in out


@pytest.mark.parametrize("args, message", [
    (["--prompt-tokens", "0"], "at least 1"),
    (["--prompt-tokens", "500", "--output-tokens", "100"], "exceed the model's context"),
    (["--batch-size", "x"], "--batch-size"),
])
def test_bad_bench_options_exit_2(zoo, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    rc = main(["bench", str(zoo.safetensors_dir), "--repeats", "1", "--output-tokens", "2", *args]
              if "--output-tokens" not in args else ["bench", str(zoo.safetensors_dir), "--repeats", "1", *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


def test_missing_model_exits_2(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(tmp_path / "absent")]) == 2
    assert "no such model" in capsys.readouterr().err


def test_bench_takes_download_like_the_other_commands(zoo, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "--download" in help_text and "Exit codes" in help_text
    assert main(["bench", str(zoo.gguf_q8_0), "--fit-only", "--download", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["schema"] == "assay.bench/1"


def test_fit_table_shows_every_part_of_the_total(zoo, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(zoo.gguf_q8_0), "--fit-only", "--json"]) == 0
    est = json.loads(capsys.readouterr().out)["fit"]["estimates"][0]
    assert est["total_bytes"] == est["weights_bytes"] + est["kv_cache_bytes"] + est["overhead_bytes"]
    assert main(["bench", str(zoo.gguf_q8_0), "--fit-only"]) == 0
    out = capsys.readouterr().out
    assert "overhead" in out and "256.0 MiB" in out  # the fixed runtime overhead dominates for a tiny model
