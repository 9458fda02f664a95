"""How fast is `assay scan` against picklescan and modelscan, on the same files, in the same run?

Builds a 1 GiB torch checkpoint (``torch.save`` zip archive of a float32 state dict) and a 1 GiB safetensors file
(plus 64 MiB versions of both, to show that memory does not grow with file size), then times each scanner's CLI
as a fresh process on each file: wall time (median of ``--repeats`` runs) and peak RSS (``/usr/bin/time -v``, or
``getrusage`` of a wrapper process when that is missing). It prints ratios against the peers measured here.

    /work/venv/bin/python benchmarks/scan_speed.py                 # builds files under /tmp/assay-scan-bench
    /work/venv/bin/python benchmarks/scan_speed.py --repeats 5 --workdir /data/bench

The peers are not dependencies of assay: install them into the same environment first
(``pip install picklescan modelscan``); a missing peer is reported as such, never silently skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

GIB = 1 << 30
MIB = 1 << 20


def build_files(workdir: Path) -> dict[str, Path]:
    """The test files; built once and reused when already present with the right size."""
    workdir.mkdir(parents=True, exist_ok=True)
    wanted = {"torch-1GiB.pt": GIB, "safetensors-1GiB.safetensors": GIB, "torch-64MiB.pt": 64 * MIB,
              "safetensors-64MiB.safetensors": 64 * MIB}
    paths = {name: workdir / name for name in wanted}
    if all(p.exists() and abs(p.stat().st_size - size) < 4 * MIB for (name, size), p in
           zip(wanted.items(), paths.values(), strict=True)):
        return paths
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    for name, size in wanted.items():
        n_tensors = max(1, size // (64 * MIB))
        rows = (size // n_tensors) // (4 * 4096)
        state = {f"model.layers.{i}.mlp.weight": torch.randn(rows, 4096, generator=gen) for i in range(n_tensors)}
        if name.endswith(".pt"):
            torch.save(state, paths[name])
        else:
            save_file(state, str(paths[name]))
        del state
    return paths


def _env(workdir: Path) -> dict[str, str]:
    """Every tool runs with compiled bytecode cached (as an installed package has it), outside the source tree."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def measure(cmd: list[str], repeats: int, env: dict[str, str]) -> dict[str, float | int | None]:
    """Median wall and CPU seconds and max peak RSS (MiB) of ``cmd`` over ``repeats`` fresh runs (after a warm-up)."""
    times, cpu, rss, codes = [], [], [], []
    timer = "/usr/bin/time" if Path("/usr/bin/time").exists() else None
    subprocess.run(cmd, capture_output=True, env=env)  # warm-up: bytecode cache and page cache
    for _ in range(repeats):
        if timer:
            start = time.perf_counter()
            proc = subprocess.run([timer, "-v", *cmd], capture_output=True, text=True, env=env)
            times.append(time.perf_counter() - start)
            fields = {k.strip(): v.strip() for k, _, v in (line.partition(": ") for line in proc.stderr.splitlines())}
            kb = fields.get("Maximum resident set size (kbytes)")
            rss.append(int(kb) / 1024 if kb else None)
            user = float(fields.get("User time (seconds)", "nan"))
            cpu.append(user + float(fields.get("System time (seconds)", "nan")))
            codes.append(proc.returncode)
        else:
            wrapper = ("import json,resource,subprocess,sys,time;t=time.perf_counter();"
                       "rc=subprocess.call(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL);"
                       "print(json.dumps([rc,time.perf_counter()-t,resource.getrusage(resource.RUSAGE_CHILDREN)"
                       ".ru_maxrss]))")
            out = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True,
                                 env=env).stdout
            rc, sec, kb = json.loads(out)
            times.append(sec)
            cpu.append(float("nan"))
            rss.append(kb / 1024)
            codes.append(rc)
    peak = [r for r in rss if r is not None]
    return {"seconds": statistics.median(times), "cpu_seconds": statistics.median(cpu),
            "peak_rss_mib": max(peak) if peak else None, "exit_code": codes[-1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/assay-scan-bench"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the raw measurements as JSON")
    args = ap.parse_args()

    paths = build_files(args.workdir)
    bindir = Path(sys.executable).parent
    tools: dict[str, list[str] | None] = {
        "assay": [sys.executable, "-m", "assay", "scan", "--json"],
        "picklescan": [str(bindir / "picklescan"), "-p"] if (bindir / "picklescan").exists() else None,
        "modelscan": [str(bindir / "modelscan"), "-p"] if (bindir / "modelscan").exists() else None,
    }
    results: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for name, path in paths.items():
        results[name] = {}
        for tool, cmd in tools.items():
            if cmd is None:
                print(f"{tool}: not installed in {bindir} (pip install {tool}); not measured", file=sys.stderr)
                continue
            results[name][tool] = measure([*cmd, str(path)], args.repeats, _env(args.workdir))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"scan speed, median of {args.repeats} runs, each a fresh process (python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cpus)")
    print("(speedup = peer time / assay time; > 1 means assay is faster. Exit codes: assay 0 safe; modelscan 3 ="
          " nothing it could scan)")
    print(f"{'file':30s} {'tool':11s} {'wall s':>7s} {'cpu s':>6s} {'peak MiB':>9s} {'exit':>4s} "
          f"{'wall speedup':>13s} {'cpu speedup':>12s}")
    for name, row in results.items():
        base, base_cpu = row.get("assay", {}).get("seconds"), row.get("assay", {}).get("cpu_seconds")
        for tool, m in row.items():
            speed = "" if tool == "assay" or not base else f"{float(m['seconds']) / float(base):.2f}x"
            cspeed = "" if tool == "assay" or not base_cpu else f"{float(m['cpu_seconds']) / float(base_cpu):.2f}x"
            rss = f"{m['peak_rss_mib']:.0f}" if m["peak_rss_mib"] is not None else "?"
            print(f"{name:30s} {tool:11s} {m['seconds']:7.3f} {m['cpu_seconds']:6.2f} {rss:>9s} {m['exit_code']:>4} "
                  f"{speed:>13s} {cspeed:>12s}")
    small, large = results.get("torch-64MiB.pt", {}).get("assay"), results.get("torch-1GiB.pt", {}).get("assay")
    if small and large and small["peak_rss_mib"] and large["peak_rss_mib"]:
        print(f"assay peak RSS, 1 GiB vs 64 MiB torch checkpoint: {large['peak_rss_mib']:.0f} vs "
              f"{small['peak_rss_mib']:.0f} MiB "
              f"(x{large['peak_rss_mib'] / small['peak_rss_mib']:.2f} for 16x the data)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
