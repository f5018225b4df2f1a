from __future__ import annotations

from typing import Any

from backends.tools import bench_store


def test_bench_runs(tmp_path: Any, capsys: Any) -> None:
    rc = bench_store.main(["store", "--flush", "SYNC_FLUSH", "--writers", "4", "--seconds", "0.3",
                           "--segment-mib", "1", "--dir", str(tmp_path / "b")])
    out = capsys.readouterr().out
    assert rc == 0 and "msg/s" in out and "p999" in out
