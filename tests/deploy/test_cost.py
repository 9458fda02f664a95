"""Cost arithmetic against hand-computed cases, and the `assay cost` command."""

from __future__ import annotations

import json

import pytest

from assay.cli.main import main
from assay.deploy.cost import CostInputs, compute_cost, cost_document, inputs_from_bench
from assay.errors import DeployError


def run_json(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, dict]:
    rc = main(args)
    out = capsys.readouterr().out
    return rc, json.loads(out) if rc == 0 else {}


def test_worked_example_from_the_issue(capsys: pytest.CaptureFixture[str]) -> None:
    # $3,000 of training, $0.15 API vs $0.01 self-hosted per task: 3000 / 0.14 = 21428.57 -> 21429 tasks.
    rc, doc = run_json(capsys, ["cost", "--api-per-task", "0.15", "--self-per-task", "0.01",
                                "--training-cost", "3000", "--json"])
    assert rc == 0
    assert doc["schema"] == "assay.cost/1"
    assert doc["break_even_tasks"] == 21429
    assert doc["api_per_task"] == 0.15 and doc["self_per_task"] == 0.01


def test_exact_division_is_not_rounded_up_by_float_error() -> None:
    # 0.3 - 0.2 is 0.09999999999999998 in binary floating point; 100 / 0.1 must still be exactly 1000 tasks.
    r = compute_cost(CostInputs(api_per_task=0.3, self_per_task=0.2, training_cost=100))
    assert r.break_even_tasks == 1000


def test_break_even_never_when_api_is_cheaper() -> None:
    r = compute_cost(CostInputs(api_per_task=0.01, self_per_task=0.02, training_cost=500))
    assert r.break_even_tasks is None
    assert r.saving_per_task == pytest.approx(-0.01)
    assert any("never" in n for n in r.notes)
    # No training cost and a cheaper self-hosted option: it pays from the first task.
    assert compute_cost(CostInputs(api_per_task=0.02, self_per_task=0.01)).break_even_tasks == 0


def test_per_token_api_price_and_throughput_derived_self_cost() -> None:
    # By hand: API = 800 * 2.5 / 1e6 + 200 * 10 / 1e6 = 0.002 + 0.002 = $0.004 per task.
    # Self: 800 / 500 + 200 / 50 = 1.6 + 4.0 = 5.6 s per task; $1.20/h -> 1.2 / 3600 * 5.6 = $0.0018667 at full
    # use, $0.0046667 at 40 % utilisation. 643 tasks per fully used hour (3600 / 5.6 = 642.86).
    r = compute_cost(CostInputs(api_input_per_mtok=2.5, api_output_per_mtok=10, tokens_in=800, tokens_out=200,
                                decode_tokens_per_s=50, prefill_tokens_per_s=500, hardware_per_hour=1.2,
                                utilisation=0.4, training_cost=3000, monthly_tasks=100_000))
    assert r.api_per_task == pytest.approx(0.004)
    assert r.seconds_per_task == pytest.approx(5.6)
    assert r.tasks_per_hour == pytest.approx(642.857, rel=1e-4)
    assert r.self_per_task == pytest.approx(1.2 / 3600 * 5.6 / 0.4)
    assert r.monthly_api == pytest.approx(400.0)
    assert r.monthly_self == pytest.approx(100_000 * 1.2 / 3600 * 5.6 / 0.4)
    assert r.break_even_tasks is None  # at 40 % the GPU costs more per task than the API
    sweep = {p.utilisation: p for p in r.utilisation_sweep}
    # At full use: saving 0.004 - 0.00186667 = 0.00213333 per task; 3000 / that = 1,406,250 tasks.
    assert sweep[1.0].break_even_tasks == 1_406_250
    assert sweep[0.4].break_even_tasks is None
    # Lower utilisation always costs more per task.
    costs = [p.self_per_task for p in r.utilisation_sweep]
    assert costs == sorted(costs, reverse=True)


def test_monthly_costs_and_payback() -> None:
    r = compute_cost(CostInputs(api_per_task=0.15, self_per_task=0.01, training_cost=3000, monthly_tasks=10_000))
    assert r.monthly_api == pytest.approx(1500.0)
    assert r.monthly_self == pytest.approx(100.0)
    assert r.payback_months == pytest.approx(21429 / 10_000)
    # The curve starts at the training cost for self-hosting and 0 for the API, and crosses after break-even.
    assert r.curve[0].tasks == 0 and r.curve[0].self_hosted == 3000 and r.curve[0].api == 0
    after = [p for p in r.curve if p.tasks > 21429]
    assert after and all(p.api > p.self_hosted for p in after)
    before = [p for p in r.curve if p.tasks < 21428]
    assert all(p.api < p.self_hosted for p in before)


def test_cost_from_a_bench_document(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = {"schema": "assay.bench/1", "hardware": {"description": "test box"},
             "candidate": {"model": "m", "batches": [
                 {"batch_size": 1, "decode_tokens_per_s": 20.0, "prefill_tokens_per_s": 400.0},
                 {"batch_size": 4, "decode_tokens_per_s": 60.0, "prefill_tokens_per_s": 800.0}]}}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench))
    # The best batch (4) is used: 100 / 800 + 60 / 60 = 1.125 s; $3.60/h = $0.001 per second -> $0.001125.
    rc, doc = run_json(capsys, ["cost", "--bench", str(path), "--gpu-price-per-hour", "3.6", "--tokens-in", "100",
                                "--tokens-out", "60", "--api-per-task", "0.01", "--json"])
    assert rc == 0
    assert doc["seconds_per_task"] == pytest.approx(1.125)
    assert doc["self_per_task"] == pytest.approx(0.001125)
    assert doc["inputs"]["source"]["batch_size"] == 4
    assert inputs_from_bench(bench, batch_size=1)["decode_tokens_per_s"] == 20.0


def test_human_output_shows_break_even_and_sweep(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["cost", "--throughput", "100", "--gpu-price-per-hour", "1", "--tokens-out", "100",
               "--api-per-task", "0.01", "--training-cost", "100", "--utilisation", "50%"])
    out = capsys.readouterr().out
    assert rc == 0
    # 100 tokens at 100 tok/s = 1 s = $1/3600 at full use, $0.000556 at 50 %: saving 0.009444 -> 10,589 tasks.
    assert "Break-even: 10,589 tasks" in out
    assert "Break-even against utilisation" in out and "50%" in out


@pytest.mark.parametrize("args, message", [
    (["--api-per-task", "0.1"], "self-hosted cost is missing"),
    (["--self-per-task", "0.1"], "API price is missing"),
    (["--api-per-task", "0.1", "--self-per-task", "-1"], "non-negative"),
    (["--api-per-task", "0.1", "--throughput", "10", "--gpu-price-per-hour", "1", "--tokens-out", "5",
      "--utilisation", "0"], "utilisation"),
    (["--api-per-task", "0.1", "--throughput", "10", "--gpu-price-per-hour", "1"], "--tokens-out"),
    (["--api-input-per-mtok", "1", "--self-per-task", "0.1"], "--tokens-in"),
    (["--api-per-task", "0.1", "--utilisation", "lots", "--self-per-task", "0.1"], "--utilisation"),
])
def test_bad_inputs_exit_2_with_one_line(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    rc = main(["cost", *args, "--json"])
    captured = capsys.readouterr()
    assert rc == 2
    doc = json.loads(captured.out)  # --json: the refusal as one assay.error/1 document
    assert doc["schema"] == "assay.error/1" and message in doc["error"] and doc["exit_code"] == 2
    assert message in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


@pytest.mark.parametrize("content", ["not json", json.dumps({"schema": "assay.scan/1"}),
                                     json.dumps({"schema": "assay.bench/1", "candidate": {"batches": []}})])
def test_bad_bench_file_exits_2(tmp_path, capsys: pytest.CaptureFixture[str], content: str) -> None:
    path = tmp_path / "b.json"
    path.write_text(content)
    rc = main(["cost", "--bench", str(path), "--gpu-price-per-hour", "1", "--tokens-out", "10",
               "--api-per-task", "1"])
    assert rc == 2
    assert "error:" in capsys.readouterr().err


def test_missing_bench_file_exits_2(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--bench", str(tmp_path / "nope.json"), "--api-per-task", "1"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_document_round_trips_through_json() -> None:
    r = compute_cost(CostInputs(api_per_task=0.15, self_per_task=0.01, training_cost=3000))
    doc = json.loads(json.dumps(cost_document(r)))
    assert doc["break_even_tasks"] == 21429 and doc["curve"]
    with pytest.raises(DeployError):
        compute_cost(CostInputs(api_per_task=float("nan"), self_per_task=0.01))


def test_bench_file_that_is_a_folder_exits_2(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["cost", "--bench", str(tmp_path), "--api-per-task", "1", "--gpu-price-per-hour", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == f"error: {tmp_path} is a folder, not a JSON file"


def test_api_per_task_wins_over_per_token_prices_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = run_json(capsys, ["cost", "--api-per-task", "0.15", "--api-input-per-mtok", "2.5",
                                "--tokens-in", "800", "--self-per-task", "0.01", "--json"])
    assert rc == 0 and doc["api_per_task"] == 0.15 and doc["api_per_task_basis"] == "given"
    assert any("per-token prices were not used" in n for n in doc["notes"])
