"""TAG and SQL92 filters: grammar coverage, RocketMQ semantics, errors, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.broker.filter import FilterError, build_filter, tags_hash
from backends.broker.filter.sql92 import tokenize


def sql(expr: str, props: dict[str, str]) -> bool:
    return build_filter("SQL92", expr).is_matched_by_properties(props)


# --- TAG --------------------------------------------------------------------------------------------


def test_tags_hash_is_java_string_hashcode() -> None:
    assert tags_hash("") == 0
    assert tags_hash("TagA") == 2598919
    assert tags_hash("Aa") == tags_hash("BB") == 2112
    assert tags_hash("polygenelubricants") == -(2**31)  # wraps to a negative int32 like Java
    assert tags_hash("\U0001f600") == 1772899  # surrogate pair: 0xD83D, 0xDE00


@pytest.mark.parametrize("expr", ["*", "", None, "  *  "])
def test_tag_sub_all(expr: str | None) -> None:
    f = build_filter("TAG", expr)
    assert f.is_matched_by_tags_code(12345)
    assert f.is_matched_by_tags_code(0)
    assert f.is_matched_by_properties({})
    assert not f.needs_properties


def test_tag_set() -> None:
    f = build_filter("TAG", " a || b ||c ")
    assert f.is_matched_by_tags_code(tags_hash("a"))
    assert f.is_matched_by_tags_code(tags_hash("c"))
    assert not f.is_matched_by_tags_code(tags_hash("d"))
    assert not f.is_matched_by_tags_code(0)  # untagged message
    # tags codes are stored as i64; the int32 value is what counts (Java's tagsCode.intValue())
    assert f.is_matched_by_tags_code(tags_hash("b") & 0xFFFFFFFF)
    assert f.is_matched_by_properties({"TAGS": "b"})
    assert not f.is_matched_by_properties({"TAGS": "ab"})
    assert not f.is_matched_by_properties({})


def test_tag_hash_collision_is_resolved_by_properties() -> None:
    f = build_filter("TAG", "Aa")
    assert f.is_matched_by_tags_code(tags_hash("BB"))  # same hash: the cheap check passes
    assert not f.is_matched_by_properties({"TAGS": "BB"})  # the exact check does not


@pytest.mark.parametrize("expr", ["||", " || ", "|| ||"])
def test_tag_without_tags_is_an_error(expr: str) -> None:
    with pytest.raises(FilterError):
        build_filter("TAG", expr)


def test_unknown_type() -> None:
    with pytest.raises(FilterError, match="unsupported"):
        build_filter("CLASS", "x")
    assert build_filter("sql92", "a = 1").expression_type == "SQL92"
    assert build_filter("SQL", "a = 1").expression_type == "SQL92"
    assert build_filter(None, "x").expression_type == "TAG"


def test_cache_returns_same_object() -> None:
    assert build_filter("SQL92", "a = 1") is build_filter("SQL92", "a = 1")
    assert build_filter("TAG", "a") is not build_filter("SQL92", "a = 'a'")


def test_store_filter_adapter() -> None:
    f = build_filter("SQL92", "a = 'x'")
    cb = f.store_filter(lambda rec: {"a": rec.decode()})
    assert cb(0, None) is True
    assert cb(0, b"x") is True
    assert cb(0, b"y") is False
    t = build_filter("TAG", "t").store_filter(lambda rec: {})
    assert t(tags_hash("t"), None) and not t(tags_hash("u"), None)


# --- SQL92 semantics ---------------------------------------------------------------------------------

P = {"a": "5", "b": "abc", "f": "2.5", "TAGS": "TagA", "flag": "true", "x.y_z": "v", "neg": "-3"}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # numeric comparisons: the property converts to the literal's type
        ("a = 5", True),
        ("a <> 5", False),
        ("a != 4", True),
        ("a > 4", True),
        ("a >= 5", True),
        ("a < 5", False),
        ("a <= 5", True),
        ("a > 4.5", True),
        ("a < 5.5", True),
        ("f > 2", False),  # '2.5' is not an Integer -> evaluation error -> no match
        ("f > 2.0", True),
        ("f = 2.5", True),
        ("neg < 0", True),
        ("neg = -3", True),
        ("a = +5", True),
        ("a = 5L", True),
        ("a < 10000000000", True),  # long literal
        ("a > .5E1", False),
        ("a >= 5E0", True),
        # strings
        ("b = 'abc'", True),
        ("b <> 'abc'", False),
        ("b = 'ab'", False),
        ("b <> 'x'", True),
        ("TAGS = 'TagA'", True),
        ("'abc' = b", True),
        ("b = 5", False),  # 'abc' does not convert -> error -> no match
        ("b <> 5", False),  # the error spoils the whole expression
        ("b <> 5 OR a = 5", False),
        ("a = 5 OR b <> 5", True),  # short-circuit: the failing part is never evaluated
        # missing property -> NULL -> no match, also under NOT / <>
        ("missing = 1", False),
        ("missing <> 1", False),
        ("NOT (missing = 1)", False),
        ("missing > 1", False),
        ("missing = 'x'", False),
        ("missing IN ('a')", False),
        ("missing NOT IN ('a')", False),
        ("missing BETWEEN 1 AND 2", False),
        ("missing NOT BETWEEN 1 AND 2", False),
        ("missing IS NULL", True),
        ("missing IS NOT NULL", False),
        ("a IS NULL", False),
        ("a IS NOT NULL", True),
        ("NOT missing IS NULL", True),  # NOT binds tighter: (NOT missing) IS NULL -> NULL IS NULL
        ("missing = 1 OR a = 5", True),
        ("missing = 1 AND a = 5", False),
        ("NOT (missing = 1 AND a = 6)", True),  # NULL AND FALSE = FALSE
        ("NOT (missing = 1 OR a = 6)", False),  # NULL OR FALSE = NULL
        # BETWEEN / NOT BETWEEN
        ("a BETWEEN 1 AND 5", True),
        ("a BETWEEN 6 AND 9", False),
        ("a NOT BETWEEN 6 AND 9", True),
        ("a NOT BETWEEN 1 AND 9", False),
        ("f BETWEEN 2.0 AND 3.0", True),
        ("a BETWEEN -1 AND 5", True),
        # IN / NOT IN
        ("b IN ('abc', 'd')", True),
        ("b IN ('d')", False),
        ("b NOT IN ('d', 'e', 'f', 'g', 'h', 'i')", True),
        ("TAGS NOT IN ('TagA')", False),
        ("a IN ('5')", True),
        # string predicates
        ("b CONTAINS 'bc'", True),
        ("b NOT CONTAINS 'bc'", False),
        ("b STARTSWITH 'ab'", True),
        ("b NOT STARTSWITH 'b'", True),
        ("b ENDSWITH 'bc'", True),
        ("b NOT ENDSWITH 'bc'", False),
        ("b CONTAINS ''", False),
        ("b NOT CONTAINS ''", False),
        ("missing CONTAINS 'x'", False),
        ("missing NOT CONTAINS 'x'", False),
        ("NOT (missing CONTAINS 'x')", True),
        # booleans, logic, parentheses
        ("TRUE", True),
        ("FALSE", False),
        ("NULL", False),
        ("NOT FALSE", True),
        ("true AND NOT false", True),
        ("flag = TRUE", True),
        ("flag = FALSE", False),
        ("flag", False),  # a bare property is never a boolean
        ("NOT flag", True),
        ("(a = 5 OR b = 'x') AND (TAGS IN ('TagA', 'TagB'))", True),
        ("a = 5 AND b = 'x' OR TAGS = 'TagA'", True),  # AND binds tighter than OR
        ("a = 6 AND (b = 'x' OR TAGS = 'TagA')", False),
        ("(a > 1) = TRUE", True),
        ("a > 1 AND a < 3 OR a = 5", True),
        # keywords are case-insensitive, names are not
        ("b in ('abc') and a between 1 and 9 or a is null", True),
        ("B = 'abc'", False),
        # names with dots and underscores, $ too
        ("x.y_z = 'v'", True),
        ("$x IS NULL", True),
        # comments and whitespace
        ("a = 5 -- trailing comment", True),
        ("a /* inline */ = 5", True),
        ("\ta\n=\r\n5\f", True),
        # string escapes
        ("q = 'it''s'", False),
        ("'it''s' = 'it''s'", True),
        # numbers compared with numbers
        ("1 < 2", True),
        ("2.5 > 2", True),
        ("-a = -5", False),  # properties are strings: negating one gives NULL
        ("-(5) = -5", True),
        ("-b IS NULL", True),  # negating a string gives NULL
    ],
)
def test_sql92(expr: str, expected: bool) -> None:
    assert sql(expr, P) is expected


def test_sql92_quote_escape_value() -> None:
    assert sql("q = 'it''s'", {"q": "it's"})
    assert sql("q IN ('a''b', 'c')", {"q": "a'b"})


def test_sql92_conversions_follow_java() -> None:
    assert sql("a = 1", {"a": "+1"})
    assert not sql("a = 1", {"a": " 1"})  # Integer.valueOf does not trim
    assert sql("a = 1.0", {"a": " 1 "})  # Double.valueOf does
    assert sql("a = 1.0", {"a": "1d"})
    assert not sql("a = 1.0", {"a": "1_0"})
    assert not sql("a = 1.0", {"a": "inf"})
    assert sql("a > 1.0", {"a": "Infinity"})
    assert not sql("a = 1", {"a": "3000000000"})  # out of Integer range -> error
    assert sql("a = 3000000000", {"a": "3000000000"})  # Long literal -> Long.valueOf
    assert sql("a > b", {"a": "2", "b": "1.5"})  # two strings: read as doubles
    assert not sql("a > b", {"a": "x", "b": "1"})
    assert sql("a = b", {"a": "x", "b": "x"})
    assert sql("a = TRUE", {"a": "TRUE"})


@pytest.mark.parametrize(
    "expr",
    [
        "",
        "   ",
        "-- only a comment",
        "a >",
        "a = ",
        "= 5",
        "a = 5 AND",
        "(a = 5",
        "a = 5)",
        "a > 'x'",
        "a < TRUE",
        "a <= NULL",
        "'x' > a",
        "a = NULL",
        "NULL = a",
        "a <> NULL",
        "TRUE = 5",
        "a BETWEEN 'x' AND 'y'",
        "a BETWEEN 5 AND 1",
        "a BETWEEN 1",
        "a IN ()",
        "a IN (1, 2)",
        "a IN 'x'",
        "5 IN ('x')",
        "a CONTAINS b",
        "a IS 5",
        "a IS NOT 5",
        "5",
        "'x'",
        "-a",
        "a = 5 b = 6",
        "a = 'unterminated",
        "a = 5 /* unterminated",
        "a # 5",
        "a == 5",
        "a = 007",
        "a = 99999999999999999999",
        "a = 1e400",
        "(a > 1) > 0",
        "NOT 5",
        "a AND 5",
        "AND",
        "a NOT 5",
        "a = 1 OR",
        "(((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((a = 1",
        "NOT " * 2000 + "TRUE",
        "a = " + "-" * 3000 + "1",
        "a = 1 = TRUE" + " = TRUE" * 500,
    ],
)
def test_sql92_errors(expr: str) -> None:
    with pytest.raises(FilterError):
        build_filter("SQL92", expr)


def test_error_messages_are_clear() -> None:
    with pytest.raises(FilterError, match=r"position 4"):
        build_filter("SQL92", "a = ")
    with pytest.raises(FilterError, match="IS NULL"):
        build_filter("SQL92", "a = NULL")


def test_long_flat_chains_evaluate() -> None:
    expr = " OR ".join(f"a = {i}" for i in range(2000))
    assert sql(expr, {"a": "1999"})
    assert not sql(expr, {"a": "2000"})
    expr2 = " AND ".join("a IS NOT NULL" for _ in range(2000))
    assert sql(expr2, {"a": "1"})


def test_tokenizer() -> None:
    kinds = [(t.kind, t.value) for t in tokenize("a>=1.5 AND b<>'x''y' or c != 2L")]
    assert kinds == [
        ("ID", "a"), ("OP", ">="), ("FLOAT", 1.5), ("KW", "AND"), ("ID", "b"), ("OP", "<>"),
        ("STR", "x'y"), ("KW", "OR"), ("ID", "c"), ("OP", "<>"), ("INT", 2), ("EOF", None),
    ]


# --- fuzz ---------------------------------------------------------------------------------------------

_ATOMS = [
    "a", "b", "TAGS", "x.y", "'s'", "'it''s'", "1", "0", "2.5", ".5", "1e3", "5L", "TRUE", "FALSE", "NULL",
    "AND", "OR", "NOT", "BETWEEN", "IN", "IS", "CONTAINS", "STARTSWITH", "ENDSWITH", "=", "<>", "!=",
    "<", "<=", ">", ">=", "(", ")", ",", "+", "-", "--", "/*", "*/", "'", "@", "\n",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_ATOMS), max_size=14), st.dictionaries(st.sampled_from(["a", "b", "TAGS", "x.y"]), st.sampled_from(["1", "2.5", "x", "", "true", "-1"])))
def test_fuzz_token_soup_only_raises_filter_error(atoms: list[str], props: dict[str, str]) -> None:
    expr = " ".join(atoms)
    try:
        f = build_filter("SQL92", expr)
    except FilterError:
        return
    assert f.is_matched_by_properties(props) in (True, False)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=3))
def test_fuzz_random_text_only_raises_filter_error(expr: str, props: dict[str, str]) -> None:
    for typ in ("SQL92", "TAG"):
        try:
            f = build_filter(typ, expr)
        except FilterError:
            continue
        assert f.is_matched_by_properties(props) in (True, False)
        assert f.is_matched_by_tags_code(7) in (True, False)


@pytest.mark.parametrize("tag", ["TagA", "Aa", "BB", "polygenelubricants", "\u00e9t\u00e9", "\U0001f600x", "a b"])
def test_tag_codes_agree_with_the_store(tag: str) -> None:
    record = pytest.importorskip("backends.store.record")
    assert record.tags_code(tag) == tags_hash(tag)
    assert build_filter("TAG", tag).is_matched_by_tags_code(record.tags_code(tag))
