"""``assay cost``: cost per task self-hosted and via an API, monthly costs and the break-even volume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from assay.cli.common import EXIT_PASS, console, emit_json, json_option
from assay.errors import DeployError, UsageError


def _utilisation(text: str) -> float:
    value = text.strip()
    try:
        return float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError as exc:
        raise UsageError(f"--utilisation must be a fraction (0.5) or a percentage (50%), got {text!r}") from exc


def read_bench_file(path: Path) -> dict[str, Any]:
    """The JSON document in ``path`` (a clear error when it is missing or not JSON)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DeployError(f"no such file: {path}") from exc
    except IsADirectoryError as exc:
        raise DeployError(f"{path} is a folder, not a JSON file") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DeployError(f"{path} is not a readable JSON document ({type(exc).__name__})") from exc
    if not isinstance(doc, dict):
        raise DeployError(f"{path} is not a JSON document of assay's (it is not an object)")
    return doc


def money(x: float | None) -> str:
    """A currency figure for tables (``-`` when there is none)."""
    from assay.report.base import money as report_money

    return "-" if x is None else report_money(x)


_COST_OPTIONS = [
    click.option("--api-per-task", type=float, default=None, help="API price per task."),
    click.option("--api-input-per-mtok", type=float, default=None, help="API price per million input tokens."),
    click.option("--api-output-per-mtok", type=float, default=None, help="API price per million output tokens."),
    click.option("--self-per-task", type=float, default=None, help="Self-hosted cost per task, if already known."),
    click.option("--bench", "bench_file", type=click.Path(path_type=Path), default=None,
                 help="An `assay bench --json` file: its measured throughput gives the self-hosted cost."),
    click.option("--batch-size", type=int, default=None,
                 help="Which batch size of the bench file to use (default: the one with the best throughput)."),
    click.option("--throughput", type=float, default=None,
                 help="Output (decode) tokens per second, instead of --bench."),
    click.option("--prefill-throughput", type=float, default=None, help="Input (prefill) tokens per second."),
    click.option("--gpu-price-per-hour", "--hardware-per-hour", "price_per_hour", type=float, default=None,
                 help="Price of the hardware per hour."),
    click.option("--utilisation", default="1.0", show_default=True,
                 help="Share of paid hours doing useful work: 0.5 or 50%. An idle GPU still costs money."),
    click.option("--tokens-in", type=int, default=None, help="Input tokens per task."),
    click.option("--tokens-out", type=int, default=None, help="Output tokens per task."),
    click.option("--training-cost", type=float, default=0.0, show_default=True, help="One-off cost of fine-tuning."),
]


def cost_options(f: Any) -> Any:
    """The cost inputs as options (shared by ``assay cost`` and ``assay advise``)."""
    for opt in reversed(_COST_OPTIONS):
        f = opt(f)
    return f


def cost_inputs(*, api_per_task: float | None, api_input_per_mtok: float | None, api_output_per_mtok: float | None,
                self_per_task: float | None, bench_file: Path | None, batch_size: int | None,
                throughput: float | None, prefill_throughput: float | None, price_per_hour: float | None,
                utilisation: str, tokens_in: int | None, tokens_out: int | None, training_cost: float,
                monthly_tasks: int | None) -> Any:
    """A :class:`~assay.deploy.cost.CostInputs` from the options of :func:`cost_options`."""
    from assay.deploy.cost import CostInputs, inputs_from_bench

    derived: dict[str, Any] = {}
    if bench_file is not None:
        if throughput is not None:
            raise UsageError("give either --bench or --throughput, not both")
        derived = inputs_from_bench(read_bench_file(bench_file), batch_size=batch_size)
    elif batch_size is not None:
        raise UsageError("--batch-size picks a row of a --bench file; give --bench too")
    return CostInputs(
        api_per_task=api_per_task, api_input_per_mtok=api_input_per_mtok, api_output_per_mtok=api_output_per_mtok,
        self_per_task=self_per_task,
        decode_tokens_per_s=derived.get("decode_tokens_per_s", throughput),
        prefill_tokens_per_s=(prefill_throughput if prefill_throughput is not None
                              else derived.get("prefill_tokens_per_s")),
        hardware_per_hour=price_per_hour, utilisation=_utilisation(utilisation), tokens_in=tokens_in,
        tokens_out=tokens_out, training_cost=training_cost, monthly_tasks=monthly_tasks,
        source=derived.get("source", {}))


@click.command("cost")
@cost_options
@click.option("--monthly-tasks", type=int, default=None, help="Expected tasks per month.")
@json_option
def command(as_json: bool, **options: Any) -> int:
    """Cost per task self-hosted and through a paid API, and when fine-tuning pays for itself.

    Self-hosted cost per task is given (--self-per-task) or derived from measured throughput (--bench FILE
    from `assay bench --json`, or --throughput) and the hardware's price per hour at a utilisation:
    seconds = tokens_in / prefill_tok_s + tokens_out / decode_tok_s; cost = price / 3600 * seconds / utilisation.
    Break-even = training cost / (API - self) per task, rounded up.

    \b
    Examples:
      assay cost --api-per-task 0.15 --self-per-task 0.01 --training-cost 3000
      assay cost --bench bench.json --gpu-price-per-hour 1.20 --utilisation 40% \\
                 --tokens-in 800 --tokens-out 200 --api-input-per-mtok 2.5 \\
                 --api-output-per-mtok 10 --training-cost 3000 --monthly-tasks 100000

    Exit codes: 0 computed, 2 bad or missing inputs.
    """
    from assay.deploy.cost import compute_cost, cost_document

    report = compute_cost(cost_inputs(**options))
    if as_json:
        emit_json(cost_document(report))
        return EXIT_PASS
    render(report)
    return EXIT_PASS


def render(report: Any) -> None:
    """Print a cost report as tables."""
    from rich.table import Table

    out = console()
    t = Table(title="Cost per task and per month", title_justify="left")
    t.add_column("")
    t.add_column("self-hosted", justify="right")
    t.add_column("API", justify="right")
    t.add_row("per task", money(report.self_per_task), money(report.api_per_task))
    t.add_row("basis", report.self_per_task_basis, report.api_per_task_basis)
    if report.monthly_api is not None:
        t.add_row(f"per month ({report.inputs.monthly_tasks:,} tasks)", money(report.monthly_self),
                  money(report.monthly_api))
    t.add_row("one-off training", money(report.inputs.training_cost), "-")
    out.print(t)
    if report.break_even_tasks is None:
        out.print("[bold]Break-even:[/bold] never (the API is not dearer per task)")
    else:
        line = f"[bold]Break-even:[/bold] {report.break_even_tasks:,} tasks"
        if report.payback_months is not None:
            line += f" (≈ {report.payback_months:.1f} months at the given volume)"
        out.print(line)
    if report.tasks_per_hour is not None:
        out.print(f"Hardware does {report.tasks_per_hour:,.0f} tasks per fully used hour "
                  f"({report.seconds_per_task:.3f} s each).")
    if report.utilisation_sweep:
        s = Table(title="Break-even against utilisation", title_justify="left")
        s.add_column("utilisation", justify="right")
        s.add_column("self-hosted per task", justify="right")
        s.add_column("break-even tasks", justify="right")
        for p in report.utilisation_sweep:
            s.add_row(f"{p.utilisation:.0%}", money(p.self_per_task),
                      "never" if p.break_even_tasks is None else f"{p.break_even_tasks:,}")
        out.print(s)
    for note in report.notes:
        out.print(f"[dim]note: {note}[/dim]")
