"""Smoke test of ``mqbench timer`` and ``mqbench filter`` (issue 5) at tiny sizes."""

from __future__ import annotations

import re

import pytest

from backends.tools import bench_filter, bench_timer, mqbench


def _summary(out: str) -> str:
    return "\n".join(line for line in out.splitlines() if line.startswith("SUMMARY"))


def test_timer_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    rc = bench_timer.main(["timer", "-n", "300", "--spread-seconds", "0.5", "--lead-seconds", "0.7",
                           "--bound-seconds", "5", "--consumers", "2", "--producers", "2"])
    s = _summary(capsys.readouterr().out)
    m = re.search(r"delivered=(\d+) lost=(\d+) duplicates=(\d+) early=(\d+)", s)
    assert m, s
    assert (int(m[1]), int(m[2]), int(m[3]), int(m[4])) == (300, 0, 0, 0)
    lat = re.search(r"lateness_ms p50=([\d.]+) p99=([\d.]+) p999=([\d.]+) max=([\d.]+) min=(-?[\d.]+)", s)
    assert lat, s
    assert float(lat[5]) >= 0
    assert re.search(r"peak_rss_mib=\d+", s)
    assert "result=OK" in s
    assert rc == 0


def test_timer_under_load_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    rc = bench_timer.main(["timer", "-n", "200", "--spread-seconds", "0.5", "--lead-seconds", "0.7",
                           "--bound-seconds", "5", "--consumers", "2", "--producers", "2", "--load-rate", "500"])
    s = _summary(capsys.readouterr().out)
    load = re.search(r"load: ([\d,]+) normal messages sent .* ([\d,]+) consumed", s)
    assert load, s
    assert int(load[1].replace(",", "")) > 0 and int(load[2].replace(",", "")) > 0
    assert "delivered=200 lost=0 duplicates=0 early=0" in s
    assert rc == 0


def test_filter_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    rc = bench_filter.main(["filter", "-n", "400", "--size", "64", "--consumers", "2",
                            "--micro-seconds", "0.05"])
    s = _summary(capsys.readouterr().out)
    rows = re.findall(r"SUMMARY filter (\w+) .* delivered=(\d+) expected=(\d+) seconds=[\d.]+ "
                      r"delivered_per_s=(\d+) scanned_per_s=(\d+)", s)
    assert {r[0] for r in rows} == {"tag_all", "tag_one", "sql_half", "sql_all"}, s
    expected = {"tag_all": 400, "tag_one": 200, "sql_half": 200, "sql_all": 400}
    for name, delivered, exp, dps, sps in rows:
        assert int(delivered) == int(exp) == expected[name]
        assert int(sps) >= int(dps) > 0
    assert re.search(r"sql92_cost=-?[\d.]+%", s)
    assert len(re.findall(r"SUMMARY micro \w+ .*: \d+ evaluations/s", s)) == 2
    assert rc == 0


def test_mqbench_dispatches_issue5_subcommands() -> None:
    assert mqbench.SUBCOMMANDS["timer"] == "backends.tools.bench_timer"
    assert mqbench.SUBCOMMANDS["filter"] == "backends.tools.bench_filter"


def test_pop_filters_check_each_record_once() -> None:
    """The POP filter path the filter benchmark measures: SQL92 is evaluated by the store on the
    record only (no second evaluation on the decoded message); TAG filters decide on the tag hash
    in the store and on the tag string once in POP."""
    from backends.broker.pop.filtering import build_message_filter

    sql = build_message_filter("SQL92", "a < 50")
    tag = build_message_filter("TAG", "TagA")
    assert sql is not None and tag is not None
    assert sql.exact_in_store is True
    assert getattr(sql.store_filter, "needs_properties", True) is True
    assert tag.exact_in_store is False
    assert getattr(tag.store_filter, "needs_properties", True) is False
    assert build_message_filter("TAG", "*") is None
