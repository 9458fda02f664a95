"""Where a result was computed: the versions of assay, Python, torch and transformers, and the hardware.

    environment()["hardware"]["cpu"]     # 'AMD EPYC 7B13'

Every ``assay.vet/1`` document carries it (``environment``), so a result names what it was computed with. torch is
not imported for it: its version comes from the package metadata, and GPUs are listed only when evaluation already
imported torch.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

from assay import __version__


def environment() -> dict[str, Any]:
    """Versions and hardware, without importing torch (its version comes from package metadata)."""
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    gpus: list[str] = []
    torch = sys.modules.get("torch")  # only if evaluation already imported it
    if torch is not None:
        try:
            if torch.cuda.is_available():
                gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception:  # noqa: BLE001 - a broken CUDA install must not break the report
            gpus = []
    return {
        "assay": __version__,
        "python": platform.python_version(),
        "torch": version("torch"),
        "transformers": version("transformers"),
        "platform": platform.platform(),
        "hardware": {"cpu": cpu, "cpu_count": os.cpu_count(), "memory_bytes": mem, "gpus": gpus},
    }
