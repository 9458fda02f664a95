"""``assay advise``: keep the API, run an open model few-shot, or fine-tune, with the numbers that decide it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from assay.cli.common import EXIT_PASS, console, emit_json, json_option
from assay.cli.cost import cost_inputs, cost_options, read_bench_file


@click.command("advise")
@cost_options
@click.option("--monthly-tasks", type=int, required=True, help="Expected tasks per month.")
@click.option("--few-shot-tokens", type=int, default=0, show_default=True,
              help="Extra prompt tokens the few-shot examples add to every task (for the few-shot option).")
@click.option("--horizon-months", type=float, default=12.0, show_default=True, help="Months the totals cover.")
@click.option("--eval", "eval_file", type=click.Path(path_type=Path), default=None,
              help="An `assay eval --json` or `assay vet --json` file: candidate (fine-tune) and base (few-shot) "
                   "quality.")
@click.option("--metric", default=None, metavar="TASK/METRIC",
              help="The quality figure to use from --eval (default: the mean over its tasks of acc_norm, else "
                   "acc, else exact_match).")
@click.option("--quality-api", type=float, default=None, help="The API's score on your task (0..1).")
@click.option("--quality-base", type=float, default=None, help="The open base model's few-shot score (0..1).")
@click.option("--quality-candidate", type=float, default=None, help="The fine-tuned model's score (0..1).")
@click.option("--quality-required", type=float, default=None,
              help="Least acceptable score (default: the API's score when given).")
@json_option
def command(monthly_tasks: int, few_shot_tokens: int, horizon_months: float, eval_file: Path | None,
            metric: str | None, quality_api: float | None, quality_base: float | None,
            quality_candidate: float | None, quality_required: float | None, as_json: bool,
            **options: Any) -> int:
    """Recommend: keep paying the API, run an open model with few-shot prompting, or fine-tune.

    Costs each option over a horizon at your volume (cost inputs as for `assay cost`), rules out options
    whose measured quality is below the required one (from --eval or --quality-*), and picks the cheapest
    that remains, showing the break-even volume and the figures behind it.

    \b
    Examples:
      assay advise --api-per-task 0.15 --self-per-task 0.01 --training-cost 3000 --monthly-tasks 5000
      assay advise --bench bench.json --gpu-price-per-hour 1.2 --utilisation 50% --tokens-in 600 \\
                   --tokens-out 150 --api-input-per-mtok 2.5 --api-output-per-mtok 10 \\
                   --training-cost 3000 --monthly-tasks 200000 --few-shot-tokens 900 \\
                   --eval vet.json --quality-required 0.6

    Exit codes: 0 a recommendation made, 2 bad or missing inputs.
    """
    from assay.deploy.advise import Quality, advice_document, advise, quality_from_document

    inputs = cost_inputs(monthly_tasks=monthly_tasks, **options)
    described = metric
    if eval_file is not None:
        cand, base, described = quality_from_document(read_bench_file(eval_file), metric=metric)
        quality_candidate = quality_candidate if quality_candidate is not None else cand
        quality_base = quality_base if quality_base is not None else base
    quality = Quality(api=quality_api, base=quality_base, candidate=quality_candidate, required=quality_required,
                      metric=described)
    advice = advise(inputs, quality=quality, few_shot_tokens=few_shot_tokens, horizon_months=horizon_months)
    if as_json:
        emit_json(advice_document(advice))
        return EXIT_PASS
    render(advice)
    return EXIT_PASS


def render(advice: Any) -> None:
    """Print the advice."""
    from rich.table import Table

    from assay.cli.cost import money

    out = console()
    out.print(f"[bold]Recommendation: {advice.recommendation}[/bold]. {advice.headline}")
    t = Table(title=f"{advice.monthly_tasks:,} tasks/month over {advice.horizon_months:g} months",
              title_justify="left")
    for col in ("option", "per task", "per month", "up front", "total", "break-even", "quality"):
        t.add_column(col, justify="left" if col == "option" else "right")
    for o in advice.options:
        be = "-" if o.name == "api" else ("never" if o.break_even_tasks is None else f"{o.break_even_tasks:,}")
        name = f"[bold green]{o.name} *[/bold green]" if o.name == advice.recommendation else o.name
        q = "-" if o.quality is None else f"{o.quality:.3f}"
        t.add_row(name, money(o.per_task), money(o.monthly), money(o.upfront), money(o.horizon_total), be,
                  q if o.acceptable else f"[red]{q} (too low)[/red]")
    out.print(t)
    if advice.quality.metric:
        out.print(f"[dim]quality: {advice.quality.metric}[/dim]")
    for r in advice.reasons:
        out.print(f"  - {r}")
