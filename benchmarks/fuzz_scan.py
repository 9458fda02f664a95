"""A bounded mutation fuzzer for `assay scan`, `assay inspect` and `assay verify` on tensor files.

Seeds are real files written by the test factory (tests/factory/models.py): a safetensors file, GGUF files (F32
and Q8_0), a torch zip archive, a legacy torch pickle and a `.npy` array. Each case mutates one seed (bit flips,
interesting integers written over length and offset fields, truncation, extension, chunk duplication, splices
from another seed), then runs the three commands on it in a worker process. A case fails when a command

- prints a traceback or "internal error", or exits with a code other than 0, 1 or 2;
- does not answer within `--case-timeout` seconds (a hang);
- pushes the worker's peak memory above `--max-rss-mib` (a memory blow-up);
- or, for `verify`, accepts a signed folder whose weight file was changed (exit 0). (Now and then the signature
  file is mutated instead; then only the first three checks apply, since JSON that still parses to the same
  signed statement is rightly accepted.)

Failing cases are kept under `--out` with the command and its output; the exit code is 1 if any case failed.

    python benchmarks/fuzz_scan.py --seed 1 --seconds 60
    python benchmarks/fuzz_scan.py --seed 7 --seconds 3600 --out /tmp/fuzz   # the long run, by hand

The mutations are deterministic for a given --seed (the number of cases depends on the machine's speed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTERESTING_INTS = [0, 1, 7, 8, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 32, 1 << 62,
                    (1 << 63) - 1, (1 << 64) - 1, 100_000_000, 100_000_001]
COMMANDS = ("scan", "inspect", "verify")


# Seeds ----------------------------------------------------------------------------------------------------------

def build_seeds(out: Path) -> dict[str, Path]:
    """One small real file per format, written by the test factory."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from tests.factory.models import (build_model, save_bin_folder, save_gguf, save_legacy_pickle,
                                      save_safetensors_folder, tiny_tokenizer)

    model, tok = build_model(seed=0, num_hidden_layers=1), tiny_tokenizer()
    seeds: dict[str, Path] = {}
    st = save_safetensors_folder(model, tok, out / "st", card=None)
    seeds["safetensors"] = st / "model.safetensors"
    seeds["gguf-f32"] = save_gguf(model, tok, out / "gguf" / "model-f32.gguf", qtype="F32")
    seeds["gguf-q8_0"] = save_gguf(model, tok, out / "gguf" / "model-q8_0.gguf", qtype="Q8_0")
    seeds["torch-zip"] = save_bin_folder(model, tok, out / "bin") / "pytorch_model.bin"
    seeds["torch-legacy"] = save_legacy_pickle(model, out / "legacy" / "pytorch_model.bin")
    npy = out / "npy" / "weights.npy"
    npy.parent.mkdir(parents=True, exist_ok=True)
    np.save(npy, np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32))
    seeds["npy"] = npy
    return seeds


# Mutations ------------------------------------------------------------------------------------------------------

def mutate(data: bytes, rng: random.Random, other: bytes) -> tuple[bytes, str]:
    """One to three random mutations of ``data``; returns the new bytes and a description."""
    buf = bytearray(data)
    done = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["flip", "byte", "int", "header-int", "truncate", "extend", "duplicate", "splice",
                           "zero-run", "digits"])
        n = len(buf)
        if n == 0:
            buf += bytes(rng.randrange(256) for _ in range(16))
            continue
        # Headers hold the lengths and offsets that matter: aim there most of the time.
        pos = rng.randrange(min(n, 4096)) if rng.random() < 0.7 else rng.randrange(n)
        if kind == "flip":
            buf[pos] ^= 1 << rng.randrange(8)
        elif kind == "byte":
            buf[pos] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        elif kind in ("int", "header-int"):
            if kind == "header-int":
                pos = rng.choice([0, 4, 8, 16, 24]) if n > 32 else 0
            width, fmt = rng.choice([(8, "<Q"), (4, "<I"), (2, "<H")])
            value = rng.choice(INTERESTING_INTS + [n, n - 1, n + 1, rng.randrange(1 << 20)]) % (1 << (8 * width))
            if pos + width <= n:
                struct.pack_into(fmt, buf, pos, value)
        elif kind == "truncate":
            del buf[rng.randrange(n):]
        elif kind == "extend":
            buf += bytes(rng.randrange(256) for _ in range(rng.choice([1, 8, 100, 1000])))
        elif kind == "duplicate":
            a = rng.randrange(n)
            chunk = buf[a:a + rng.randint(1, 512)]
            buf[pos:pos] = chunk
        elif kind == "splice" and other:
            a = rng.randrange(len(other))
            chunk = other[a:a + rng.randint(1, 2048)]
            buf[pos:pos + len(chunk)] = chunk
        elif kind == "digits":
            # a decimal number in a text header (safetensors JSON offsets and shapes, the npy shape)
            head = bytes(buf[:65536])
            spots = [i for i in range(1, len(head)) if head[i:i + 1].isdigit() and not head[i - 1:i].isdigit()]
            if spots:
                pos = rng.choice(spots)
                end = pos
                while end < len(buf) and buf[end:end + 1].isdigit():
                    end += 1
                buf[pos:end] = str(rng.choice(INTERESTING_INTS + [n, 0, 1 << 70])).encode()
        elif kind == "zero-run":
            end = min(n, pos + rng.randint(1, 256))
            buf[pos:end] = b"\x00" * (end - pos)
        done.append(f"{kind}@{pos}")
    return bytes(buf), ", ".join(done)


# The worker: runs commands in-process, one at a time ---------------------------------------------------------------

def worker(max_as_mib: int, answer_fd: int) -> None:
    """Read one JSON list of CLI arguments per line on stdin; answer on ``answer_fd`` with rc, output, peak RSS."""
    resource.setrlimit(resource.RLIMIT_AS, (max_as_mib << 20, max_as_mib << 20))
    os.environ["COLUMNS"] = "200"
    from assay.cli.main import main

    answers = os.fdopen(answer_fd, "w", buffering=1)
    log = tempfile.NamedTemporaryFile(prefix="fuzz-out-", delete=False)
    saved = os.dup(1), os.dup(2)
    for line in sys.stdin:
        args = json.loads(line)
        log.seek(0)
        log.truncate()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            rc = main(args)
        except SystemExit as exc:  # click may exit itself
            rc = exc.code if isinstance(exc.code, int) else 99
        except BaseException as exc:  # noqa: BLE001 - a crash of the CLI itself is a finding
            import traceback

            traceback.print_exc()
            rc = 98 if not isinstance(exc, MemoryError) else 97
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
        output = Path(log.name).read_text(errors="replace")
        answers.write(json.dumps({"rc": rc, "output": output[-4000:],
                                  "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}) + "\n")


@dataclass
class _Worker:
    proc: subprocess.Popen[str]
    answers: int

    @classmethod
    def start(cls, max_as_mib: int) -> _Worker:
        r, w = os.pipe()
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen([sys.executable, __file__, "--worker", "--max-as-mib", str(max_as_mib),
                                 "--answer-fd", str(w)], stdin=subprocess.PIPE, text=True, env=env, pass_fds=(w,))
        os.close(w)
        return cls(proc, r)

    def run(self, args: list[str], timeout: float) -> dict | None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(args) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"rc": -1, "output": "worker died", "maxrss_mib": 0}
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.answers], [], [], left)[0]:
                return None
            chunk = os.read(self.answers, 1 << 16)
            if not chunk:
                return {"rc": -1, "output": "worker died", "maxrss_mib": 0}
            line += chunk
        return json.loads(line)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self.answers)


# The loop -------------------------------------------------------------------------------------------------------

def _keygen(tmp: Path) -> tuple[Path, Path]:
    from assay.cli.main import main

    key = tmp / "fuzz-key.pem"
    with open(os.devnull, "w") as null:
        saved = os.dup(1)
        os.dup2(null.fileno(), 1)
        try:
            rc = main(["keygen", "--out", str(key)])
        finally:
            os.dup2(saved, 1)
    assert rc == 0, "keygen failed"
    return key, Path(str(key) + ".pub")


def _sign(folder: Path, key: Path) -> None:
    from assay.cli.main import main

    with open(os.devnull, "w") as null:
        saved = os.dup(1)
        os.dup2(null.fileno(), 1)
        try:
            rc = main(["sign", str(folder), "--key", str(key)])
        finally:
            os.dup2(saved, 1)
    assert rc == 0, f"sign failed on {folder}"


def fuzz(*, seed: int, seconds: float, out: Path | None, case_timeout: float, max_rss_mib: int,
         max_as_mib: int, quiet: bool = False) -> list[dict]:
    """Run cases for ``seconds``; return the failures (each a dict with the case and what went wrong)."""
    sys.path.insert(0, str(ROOT / "src"))
    rng = random.Random(seed)
    failures: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="assay-fuzz-") as tmp_s:
        tmp = Path(tmp_s)
        seeds = build_seeds(tmp / "seeds")
        blobs = {k: p.read_bytes() for k, p in seeds.items()}
        key, pub = _keygen(tmp)
        # a signed folder per seed: the weight file is mutated after signing, so verify must never say 0
        signed: dict[str, Path] = {}
        for name, path in seeds.items():
            folder = tmp / "signed" / name
            folder.mkdir(parents=True)
            shutil.copyfile(path, folder / path.name)
            _sign(folder, key)
            signed[name] = folder
        w = _Worker.start(max_as_mib)
        start = time.monotonic()
        cases = runs = 0
        try:
            while time.monotonic() - start < seconds:
                name = rng.choice(sorted(seeds))
                other = blobs[rng.choice(sorted(blobs))]
                data, how = mutate(blobs[name], rng, other)
                case = tmp / "case" / f"{cases:06d}"
                shutil.copytree(signed[name], case)
                target = case / seeds[name].name
                if rng.random() < 0.1:  # now and then the signature is what was tampered with
                    sig = case / "model.sig"
                    sig_data, how = mutate(sig.read_bytes(), rng, sig.read_bytes())
                    sig.write_bytes(sig_data)
                    how = "model.sig: " + how
                    changed = False  # a reformatted envelope may still carry the same signed statement
                else:
                    target.write_bytes(data)
                    changed = data != blobs[name]
                cases += 1
                for cmd in COMMANDS:
                    args = [cmd, str(target if cmd != "verify" else case), "--json"]
                    if cmd == "verify":
                        args += ["--key", str(pub)]
                    res = w.run(args, case_timeout)
                    runs += 1
                    problem = None
                    if res is None:
                        problem = f"no answer within {case_timeout} s (hang)"
                        w.stop()
                        w = _Worker.start(max_as_mib)
                    elif res["rc"] not in (0, 1, 2):
                        problem = f"exit code {res['rc']}"
                    elif "Traceback" in res["output"] or "internal error" in res["output"]:
                        problem = "traceback or internal error"
                    elif res["maxrss_mib"] > max_rss_mib:
                        problem = f"peak memory {res['maxrss_mib']} MiB > {max_rss_mib} MiB"
                    elif cmd == "verify" and changed and res["rc"] == 0:
                        problem = "verify accepted a changed file"
                    if problem is None:
                        continue
                    fail = {"seed": name, "mutation": how, "command": " ".join(args), "problem": problem,
                            "output": (res or {}).get("output", "")[-2000:]}
                    failures.append(fail)
                    if not quiet:
                        print(f"FAIL {name} [{how}] {cmd}: {problem}", flush=True)
                    if out is not None:
                        keep = out / f"fail-{len(failures):03d}"
                        keep.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(target, keep / target.name)
                        (keep / "failure.json").write_text(json.dumps(fail, indent=2))
                    if res is not None and (res["maxrss_mib"] > max_rss_mib or not w.alive()):
                        w.stop()
                        w = _Worker.start(max_as_mib)  # a fresh peak for the next case
                shutil.rmtree(case, ignore_errors=True)
        finally:
            w.stop()
        elapsed = time.monotonic() - start
        if not quiet:
            print(f"{cases} cases, {runs} command runs in {elapsed:.0f} s (seed {seed}): {len(failures)} failure(s)")
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=None, help="keep failing cases here")
    ap.add_argument("--case-timeout", type=float, default=20.0, help="seconds before a command counts as hung")
    ap.add_argument("--max-rss-mib", type=int, default=1024, help="peak worker memory that counts as a blow-up")
    ap.add_argument("--max-as-mib", type=int, default=4096, help="address-space limit of the worker")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--answer-fd", type=int, default=-1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.max_as_mib, args.answer_fd)
        return 0
    failures = fuzz(seed=args.seed, seconds=args.seconds, out=args.out, case_timeout=args.case_timeout,
                    max_rss_mib=args.max_rss_mib, max_as_mib=args.max_as_mib)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
