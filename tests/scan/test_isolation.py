"""The scanner never imports torch (the core install has none) and sends nothing anywhere."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_scan_does_not_import_torch(zoo, hostile) -> None:  # type: ignore[no-untyped-def]
    targets = [str(zoo.bin_dir), str(zoo.legacy_pickle), str(zoo.gguf_q8_0),
               str(next(s for s in hostile if s.name == "torch-zip-evil").path)]
    code = textwrap.dedent(f"""
        import sys, socket
        def no_network(*a, **k):
            raise AssertionError("the scanner opened a socket")
        socket.socket.connect = no_network
        from assay.cli.main import main
        codes = [main(["scan", t, "--json"]) for t in {targets!r}]
        assert codes == [0, 0, 0, 1], codes
        leaked = [m for m in ("torch", "transformers", "tensorflow", "keras") if m in sys.modules]
        assert not leaked, leaked
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")
