"""The machine a local bench runs on, and the memory its process uses while it runs.

    >>> describe_hardware().description
    'AMD EPYC, 2 cores, 23.5 GiB RAM, torch 2.13.0+cpu (cpu, 1 thread)'
    >>> with RssSampler() as rss:
    ...     load_and_run()
    >>> rss.peak  # highest process RSS seen, bytes
"""

from __future__ import annotations

import os
import platform
import threading
from pathlib import Path

from assay.deploy.bench.results import Hardware
from assay.formatting import human_bytes

_SAMPLE_INTERVAL_S = 0.02


class RssSampler:
    """Samples the process RSS in a background thread; ``peak`` is the highest value seen.

    With ``enabled=False`` no thread runs (it would compete for the GIL with the model) and ``peak`` is only the
    RSS at entry and exit; the isolated worker uses the kernel's exact ``ru_maxrss`` instead.
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self.peak = self.now()
        self._enabled = enabled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> int:
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except ImportError:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.wait(_SAMPLE_INTERVAL_S):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> RssSampler:
        if self._enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._enabled:
            self._thread.join()
        self.peak = max(self.peak, self.now())


def describe_hardware(*, device: str = "cpu") -> Hardware:
    """Describe this machine (CPU model, cores, RAM, GPU, library versions)."""
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    physical = ram = None
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
        ram = int(psutil.virtual_memory().total)
    except ImportError:
        try:
            ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            ram = None
    gpu = gpu_mem = None
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        gpu, gpu_mem = props.name, int(props.total_memory)
    threads = torch.get_num_threads()
    parts = [gpu or cpu, f"{usable} cores" if usable else None,
             f"{human_bytes(ram)} RAM" if ram else None,
             f"torch {torch.__version__} ({device}, {threads} thread{'s' if threads != 1 else ''})"]
    return Hardware(description=", ".join(p for p in parts if p), cpu=cpu, logical_cores=os.cpu_count(),
                    usable_cores=usable, physical_cores=physical, ram_bytes=ram, gpu=gpu, gpu_memory_bytes=gpu_mem,
                    torch_version=str(torch.__version__), transformers_version=transformers.__version__,
                    torch_threads=threads, python=platform.python_version(), os=platform.platform())

