"""Regenerate the Python modules for the apache.rocketmq.v2 protos.

Run ``python -m protos.generate`` after editing a ``.proto`` file. The generated modules are committed;
``tests/unit/test_protos_fresh.py`` fails when they differ from what this script produces.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PROTO_DIR = ROOT / "apache" / "rocketmq" / "v2"
NAMES = ("definition", "service", "admin")


def generate(out_root: Path) -> list[Path]:
    """Generate ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` under ``out_root`` (a protos/ twin)."""
    from grpc_tools import protoc  # imported late: only needed by developers and the freshness test

    out_root.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
    ] + [str(PROTO_DIR / f"{n}.proto") for n in NAMES]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")
    produced = sorted((out_root / "apache" / "rocketmq" / "v2").glob("*_pb2*.py*"))
    for path in produced:
        text = path.read_text()
        # Make the imports package-relative so the modules live under protos.apache.rocketmq.v2.
        text = re.sub(r"^from apache\.rocketmq\.v2 import", "from . import", text, flags=re.M)
        path.write_text(text)
    return produced


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--check":
        with tempfile.TemporaryDirectory() as tmp:
            stale = []
            for p in generate(Path(tmp)):
                committed = PROTO_DIR / p.name
                if not committed.exists() or committed.read_text() != p.read_text():
                    stale.append(p.name)
            if stale:
                print("stale generated modules: " + ", ".join(stale), file=sys.stderr)
                return 1
            return 0
    generate(ROOT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
