"""SQL92 property filter (RocketMQ's ``SqlFilter`` / the filter module's ``SelectorParser`` grammar).

A small hand-written tokenizer and recursive-descent parser that compiles an expression into a tree of
Python closures; evaluating a message is one call of the root closure on its properties dict.

Grammar (keywords case-insensitive), loosest binding first -- the same levels as RocketMQ::

    or_expr      := and_expr (OR and_expr)*
    and_expr     := equality (AND equality)*
    equality     := comparison ( '=' comparison | ('<>' | '!=') comparison
                                 | IS NULL | IS NOT NULL )*
    comparison   := unary ( ('>' | '>=' | '<' | '<=') unary
                            | [NOT] BETWEEN unary AND unary
                            | [NOT] IN '(' string (',' string)* ')'
                            | [NOT] (CONTAINS | STARTSWITH | ENDSWITH) string )*
    unary        := '+' unary | '-' unary | NOT unary | primary
    primary      := literal | property | '(' or_expr ')'
    literal      := 'string' ('' escapes a quote) | integer [L] | decimal | TRUE | FALSE | NULL

As in RocketMQ, ``NOT`` is a prefix at the unary level (``NOT a = 1`` means ``(NOT a) = 1``; write
``NOT (a = 1)``), ``!=`` is accepted as an extension meaning ``<>``, and property names may also contain
dots. ``--`` line and ``/* */`` block comments are skipped.

Semantics follow RocketMQ (three-valued logic; a message matches only when the result is TRUE):

* properties are strings; a missing property is NULL and a comparison with NULL is NULL (so it never
  matches, also under ``NOT`` or ``<>``); ``IS [NOT] NULL`` tests presence;
* a property compared with a number is converted to that number's type (``Integer.valueOf`` /
  ``Long.valueOf`` / ``Double.valueOf`` rules); if it does not convert, evaluating the whole expression
  fails and the message does not match; two strings compared with ``<``/``>`` are both read as doubles;
* ``<``, ``<=``, ``>``, ``>=`` and ``BETWEEN`` reject string/boolean/NULL literal operands at compile
  time; ``= NULL`` is rejected (use ``IS NULL``); ``BETWEEN`` literal bounds must be ordered;
* ``IN`` needs a property on the left and string literals in the list;
* ``CONTAINS``/``STARTSWITH``/``ENDSWITH`` (and their ``NOT`` forms) are FALSE on a missing property
  or an empty search string;
* a bare property used as a condition is TRUE never (its value is a string, not a boolean).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from backends.broker.filter.errors import FilterError

# A compiled node: properties -> value (str | int | float | bool | None).
Evaluator = Callable[[Mapping[str, str]], Any]

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_MAX_DOUBLE = 1.7976931348623157e308

KEYWORDS = frozenset(
    {"NOT", "AND", "OR", "BETWEEN", "IN", "TRUE", "FALSE", "NULL", "IS", "CONTAINS", "STARTSWITH", "ENDSWITH"}
)


class EvalError(Exception):
    """Evaluation failed (e.g. a property does not convert to a number): the message does not match."""


# --- tokenizer -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Token:
    kind: str  # "KW" (keyword, value upper-cased), "ID", "STR", "INT", "FLOAT", "OP", "EOF"
    value: Any
    pos: int


_WS = " \t\n\r\f"
_ID_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$")
_ID_PART = _ID_START | frozenset("0123456789.")
_DIGITS = frozenset("0123456789")
_NUMBER_RE = re.compile(
    r"""
    (?P<float>
        [0-9]+ \. [0-9]* (?:[eE][+-]?[0-9]+)?
      | \. [0-9]+ (?:[eE][+-]?[0-9]+)?
      | [0-9]+ [eE][+-]?[0-9]+
    )
    | (?P<int> [0-9]+ ) (?P<long>[lL])?
    """,
    re.VERBOSE,
)
_OPERATORS = ("<>", "!=", ">=", "<=", "=", ">", "<", "(", ")", ",", "+", "-")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _WS:
            i += 1
            continue
        if text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise FilterError(f"unterminated comment at position {i}")
            i = j + 2
            continue
        if c == "'":
            j = i + 1
            parts: list[str] = []
            while True:
                k = text.find("'", j)
                if k < 0:
                    raise FilterError(f"unterminated string literal at position {i}")
                parts.append(text[j:k])
                if k + 1 < n and text[k + 1] == "'":
                    parts.append("'")
                    j = k + 2
                    continue
                j = k + 1
                break
            tokens.append(Token("STR", "".join(parts), i))
            i = j
            continue
        if c in _DIGITS or (c == "." and i + 1 < n and text[i + 1] in _DIGITS):
            m = _NUMBER_RE.match(text, i)
            if m is None:  # pragma: no cover - the first char guarantees a match
                raise FilterError(f"bad number at position {i}")
            if m.group("float") is not None:
                try:
                    fv = float(m.group("float"))
                except ValueError as e:  # pragma: no cover
                    raise FilterError(f"bad number {m.group(0)!r} at position {i}") from e
                if fv > _MAX_DOUBLE:
                    raise FilterError(f"number {m.group(0)!r} at position {i} is too large")
                tokens.append(Token("FLOAT", fv, i))
            else:
                digits = m.group("int")
                if len(digits) > 1 and digits[0] == "0":
                    raise FilterError(f"bad number {m.group(0)!r} at position {i} (leading zero)")
                iv = int(digits)
                if iv > _LONG_MAX:
                    raise FilterError(f"number {m.group(0)!r} at position {i} is out of the long range")
                tokens.append(Token("INT", iv, i))
            i = m.end()
            continue
        if c in _ID_START:
            j = i + 1
            while j < n and text[j] in _ID_PART:
                j += 1
            word = text[i:j]
            upper = word.upper()
            if upper in KEYWORDS:
                tokens.append(Token("KW", upper, i))
            else:
                tokens.append(Token("ID", word, i))
            i = j
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                tokens.append(Token("OP", "<>" if op == "!=" else op, i))
                i += len(op)
                break
        else:
            raise FilterError(f"unexpected character {c!r} at position {i}")
    tokens.append(Token("EOF", None, n))
    return tokens


# --- value semantics (RocketMQ ComparisonExpression with string conversion on) -------------------

_JAVA_DOUBLE_RE = re.compile(
    r"[+-]?(?:NaN|Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fFdD]?)"
)
_JAVA_INT_RE = re.compile(r"[+-]?[0-9]+")


def java_double(s: str) -> float:
    """``Double.valueOf``: surrounding whitespace/control chars ignored; raises EvalError otherwise."""
    t = s.strip("".join(chr(c) for c in range(33)))
    if not _JAVA_DOUBLE_RE.fullmatch(t):
        raise EvalError(f"not a number: {s!r}")
    if t[-1] in "fFdD" and not t.endswith("Infinity"):
        t = t[:-1]
    return float(t)


def java_integral(s: str, lo: int, hi: int) -> int:
    """``Integer.valueOf`` / ``Long.valueOf``: optional sign and digits only, in range."""
    if not _JAVA_INT_RE.fullmatch(s):
        raise EvalError(f"not an integer: {s!r}")
    v = int(s)
    if v < lo or v > hi:
        raise EvalError(f"out of range: {s!r}")
    return v


def _to_int_like(s: str, template: int) -> int:
    if _INT_MIN <= template <= _INT_MAX:
        return java_integral(s, _INT_MIN, _INT_MAX)
    return java_integral(s, _LONG_MIN, _LONG_MAX)


def _cmp(a: Any, b: Any) -> int:
    if a != a:  # NaN: Java's Double.compareTo puts NaN above everything, equal to itself
        return 0 if b != b else 1
    if b != b:
        return -1
    if a < b:
        return -1
    if a > b:
        return 1
    return 0


def compare(lv: Any, rv: Any) -> int:
    """Three-way compare of two non-null values with RocketMQ's conversions; raises EvalError."""
    lt, rt = type(lv), type(rv)
    if lt is rt:
        return _cmp(lv, rv)
    if lt is bool:
        if rt is str:  # RocketMQ casts the Boolean to String here and fails
            raise EvalError("cannot compare a boolean with a string")
        return -1
    if lt is int:
        if rt is float:
            return _cmp(float(lv), rv)
        if rt is str:
            return _cmp(lv, _to_int_like(rv, lv))
        return -1
    if lt is float:
        if rt is int:
            return _cmp(lv, float(rv))
        if rt is str:
            return _cmp(lv, java_double(rv))
        return -1
    if lt is str:
        if rt is bool:
            return _cmp(lv.lower() == "true", rv)
        if rt is int:
            return _cmp(_to_int_like(lv, rv), rv)
        if rt is float:
            return _cmp(java_double(lv), rv)
        return -1
    return -1


def _equal(lv: Any, rv: Any) -> bool | None:
    if lv is None or rv is None:
        if lv is None and rv is None:
            return True
        return None if lv is None else False
    if type(lv) is type(rv) and lv == rv:
        return True
    return compare(lv, rv) == 0


# --- AST -> closures -------------------------------------------------------------------------------


@dataclass(slots=True)
class Node:
    kind: str  # "const", "prop", "bool" (a boolean-valued expression), "value" (e.g. negation)
    fn: Evaluator
    value: Any = None  # constant value / property name
    depth: int = 1


MAX_DEPTH = 100


def _bool(fn: Evaluator, *children: Node, kind: str = "bool") -> Node:
    depth = 1 + max((c.depth for c in children), default=0)
    if depth > MAX_DEPTH:
        raise FilterError(f"SQL92 expression nested too deeply (more than {MAX_DEPTH} levels)")
    return Node(kind, fn, None, depth)


def _const(value: Any) -> Node:
    return Node("const", lambda _p: value, value)


def _describe(n: Node) -> str:
    if n.kind == "const":
        if n.value is None:
            return "NULL"
        if isinstance(n.value, bool):
            return "TRUE" if n.value else "FALSE"
        if isinstance(n.value, str):
            return "'" + n.value.replace("'", "''") + "'"
        return str(n.value)
    if n.kind == "prop":
        return str(n.value)
    return "expression"


def _as_bool(n: Node) -> Node:
    if n.kind == "bool" or (n.kind == "const" and (n.value is None or isinstance(n.value, bool))):
        return n
    if n.kind == "prop":
        name = n.value

        def cast(p: Mapping[str, str]) -> Any:
            v = p.get(name)
            return None if v is None else False  # property values are strings, never booleans

        return _bool(cast, n)
    raise FilterError(f"{_describe(n)} will not result in a boolean value")


def _check_less_than_operand(n: Node) -> None:
    if n.kind == "const":
        if isinstance(n.value, (int, float)) and not isinstance(n.value, bool):
            return
        raise FilterError(f"value {_describe(n)} cannot be compared with <, <=, >, >= or BETWEEN")
    if n.kind == "bool":
        raise FilterError("a condition cannot be compared with <, <=, >, >= or BETWEEN")


def _check_equal_operands(left: Node, right: Node) -> None:
    for n in (left, right):
        if n.kind == "const" and n.value is None:
            raise FilterError("NULL cannot be compared with = or <>; use IS NULL / IS NOT NULL")
    if left.kind == "const" and right.kind == "const":
        if isinstance(left.value, bool) and not isinstance(right.value, bool):
            raise FilterError(f"{_describe(left)} cannot be compared with {_describe(right)}")


def _make_equal(left: Node, right: Node) -> Node:
    lf, rf = left.fn, right.fn
    if left.kind == "prop" and right.kind == "const":
        name, c = left.value, right.value
        if isinstance(c, str):

            def eq_str(p: Mapping[str, str]) -> Any:
                v = p.get(name)
                return None if v is None else v == c

            return _bool(eq_str, left, right)

        def eq_const(p: Mapping[str, str]) -> Any:
            v = p.get(name)
            return None if v is None else compare(v, c) == 0

        return _bool(eq_const, left, right)
    return _bool(lambda p: _equal(lf(p), rf(p)), left, right)


def _make_not(n: Node) -> Node:
    f = n.fn

    def neg(p: Mapping[str, str]) -> Any:
        v = f(p)
        return None if v is None else not v

    return _bool(neg, n)


def _make_relational(left: Node, right: Node, test: Callable[[int], bool]) -> Node:
    lf, rf = left.fn, right.fn

    def rel(p: Mapping[str, str]) -> Any:
        lv = lf(p)
        if lv is None:
            return None
        rv = rf(p)
        if rv is None:
            return None
        if type(lv) is str and type(rv) is str:
            return test(_cmp(java_double(lv), java_double(rv)))
        return test(compare(lv, rv))

    return _bool(rel, left, right)


def _lt(c: int) -> bool:
    return c < 0


def _le(c: int) -> bool:
    return c <= 0


def _gt(c: int) -> bool:
    return c > 0


def _ge(c: int) -> bool:
    return c >= 0


_RELATIONAL = {"<": _lt, "<=": _le, ">": _gt, ">=": _ge}


def _make_and(operands: list[Node]) -> Node:
    """Left-to-right AND of a chain, stopping at the first FALSE (RocketMQ's LogicExpression)."""
    if len(operands) == 1:
        return operands[0]
    fns = [o.fn for o in operands]

    def f(p: Mapping[str, str]) -> Any:
        unknown = False
        for fn in fns:
            v = fn(p)
            if v is False:
                return False
            if v is None:
                unknown = True
        return None if unknown else True

    return _bool(f, *operands)


def _make_or(operands: list[Node]) -> Node:
    """Left-to-right OR of a chain, stopping at the first TRUE."""
    if len(operands) == 1:
        return operands[0]
    fns = [o.fn for o in operands]

    def f(p: Mapping[str, str]) -> Any:
        unknown = False
        for fn in fns:
            v = fn(p)
            if v is True:
                return True
            if v is None:
                unknown = True
        return None if unknown else False

    return _bool(f, *operands)


def _make_negate(n: Node) -> Node:
    if n.kind == "const" and isinstance(n.value, (int, float)) and not isinstance(n.value, bool):
        return _const(-n.value)
    f = n.fn

    def neg(p: Mapping[str, str]) -> Any:
        v = f(p)
        if type(v) is int or type(v) is float:
            return -v
        return None

    return _bool(neg, n, kind="value")


def _make_string_op(left: Node, op: str, search: str, negate: bool) -> Node:
    f = left.fn
    test: Callable[[str], bool]
    if op == "CONTAINS":
        test = lambda s: search in s  # noqa: E731
    elif op == "STARTSWITH":
        test = lambda s: s.startswith(search)  # noqa: E731
    else:
        test = lambda s: s.endswith(search)  # noqa: E731

    def g(p: Mapping[str, str]) -> Any:
        if not search:
            return False
        v = f(p)
        if type(v) is not str:
            return False
        return test(v) != negate

    return _bool(g, left)


def _make_in(left: Node, values: list[str], negate: bool) -> Node:
    if left.kind != "prop":
        raise FilterError(f"expected a property on the left of {'NOT IN' if negate else 'IN'}")
    name = left.value
    members = frozenset(values)

    def f(p: Mapping[str, str]) -> Any:
        v = p.get(name)
        if v is None:
            return None
        return (v in members) != negate

    return _bool(f, left)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    # helpers
    def peek(self, k: int = 0) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def next(self) -> Token:
        t = self.tokens[self.i]
        if t.kind != "EOF":
            self.i += 1
        return t

    def at_kw(self, *words: str, k: int = 0) -> bool:
        t = self.peek(k)
        return t.kind == "KW" and t.value in words

    def at_op(self, *ops: str) -> bool:
        t = self.peek()
        return t.kind == "OP" and t.value in ops

    def expect_op(self, op: str) -> None:
        t = self.next()
        if t.kind != "OP" or t.value != op:
            raise FilterError(f"expected {op!r} at position {t.pos}, found {_show(t)}")

    def expect_kw(self, word: str) -> None:
        t = self.next()
        if t.kind != "KW" or t.value != word:
            raise FilterError(f"expected {word} at position {t.pos}, found {_show(t)}")

    def string(self) -> str:
        t = self.next()
        if t.kind != "STR":
            raise FilterError(f"expected a string literal at position {t.pos}, found {_show(t)}")
        return str(t.value)

    # grammar
    def parse(self) -> Node:
        if self.peek().kind == "EOF":
            raise FilterError("empty SQL92 expression")
        n = self.or_expr()
        t = self.peek()
        if t.kind != "EOF":
            raise FilterError(f"unexpected {_show(t)} at position {t.pos}")
        return _as_bool(n)

    def or_expr(self) -> Node:
        left = self.and_expr()
        if not self.at_kw("OR"):
            return left
        operands = [_as_bool(left)]
        while self.at_kw("OR"):
            self.next()
            operands.append(_as_bool(self.and_expr()))
        return _make_or(operands)

    def and_expr(self) -> Node:
        left = self.equality()
        if not self.at_kw("AND"):
            return left
        operands = [_as_bool(left)]
        while self.at_kw("AND"):
            self.next()
            operands.append(_as_bool(self.equality()))
        return _make_and(operands)

    def equality(self) -> Node:
        left = self.comparison()
        while True:
            if self.at_op("="):
                self.next()
                right = self.comparison()
                _check_equal_operands(left, right)
                left = _make_equal(left, right)
            elif self.at_op("<>"):
                self.next()
                right = self.comparison()
                _check_equal_operands(left, right)
                left = _make_not(_make_equal(left, right))
            elif self.at_kw("IS"):
                is_tok = self.next()
                if self.at_kw("NULL"):
                    self.next()
                    left = _make_is_null(left, negate=False)
                elif self.at_kw("NOT") and self.at_kw("NULL", k=1):
                    self.next()
                    self.next()
                    left = _make_is_null(left, negate=True)
                else:
                    raise FilterError(f"expected NULL or NOT NULL after IS at position {is_tok.pos}")
            else:
                return left

    def comparison(self) -> Node:
        left = self.unary()
        while True:
            t = self.peek()
            if t.kind == "OP" and t.value in _RELATIONAL:
                self.next()
                right = self.unary()
                _check_less_than_operand(left)
                _check_less_than_operand(right)
                left = _make_relational(left, right, _RELATIONAL[t.value])
                continue
            negate = False
            if self.at_kw("NOT") and self.at_kw("BETWEEN", "IN", "CONTAINS", "STARTSWITH", "ENDSWITH", k=1):
                self.next()
                negate = True
            elif not self.at_kw("BETWEEN", "IN", "CONTAINS", "STARTSWITH", "ENDSWITH"):
                return left
            op = str(self.next().value)
            if op == "BETWEEN":
                low = self.unary()
                self.expect_kw("AND")
                high = self.unary()
                left = _make_between(left, low, high, negate)
            elif op == "IN":
                self.expect_op("(")
                values = [self.string()]
                while self.at_op(","):
                    self.next()
                    values.append(self.string())
                self.expect_op(")")
                left = _make_in(left, values, negate)
            else:
                left = _make_string_op(left, op, self.string(), negate)

    def unary(self) -> Node:
        if self.at_op("+"):
            self.next()
            return self.unary()
        if self.at_op("-"):
            self.next()
            return _make_negate(self.unary())
        if self.at_kw("NOT"):
            self.next()
            return _make_not(_as_bool(self.unary()))
        return self.primary()

    def primary(self) -> Node:
        t = self.next()
        if t.kind in ("STR", "INT", "FLOAT"):
            return _const(t.value)
        if t.kind == "KW" and t.value in ("TRUE", "FALSE", "NULL"):
            return _const({"TRUE": True, "FALSE": False, "NULL": None}[t.value])
        if t.kind == "ID":
            name = str(t.value)
            return Node("prop", lambda p: p.get(name), name)
        if t.kind == "OP" and t.value == "(":
            n = self.or_expr()
            self.expect_op(")")
            return n
        raise FilterError(f"unexpected {_show(t)} at position {t.pos}")


def _show(t: Token) -> str:
    if t.kind == "EOF":
        return "end of expression"
    if t.kind == "STR":
        return "'" + str(t.value).replace("'", "''") + "'"
    return repr(str(t.value))


def _make_is_null(left: Node, negate: bool) -> Node:
    f = left.fn
    if negate:
        return _bool(lambda p: f(p) is not None, left)
    return _bool(lambda p: f(p) is None, left)


def _make_between(value: Node, low: Node, high: Node, negate: bool) -> Node:
    for n in (value, low, high):
        _check_less_than_operand(n)
    if negate:
        return _make_or([_make_relational(value, low, _lt), _make_relational(value, high, _gt)])
    if low.kind == "const" and high.kind == "const":
        if compare(high.value, low.value) < 0:
            raise FilterError(
                f"illegal BETWEEN bounds: {_describe(low)} must be less than or equal to {_describe(high)}"
            )
    return _make_and([_make_relational(value, low, _ge), _make_relational(value, high, _le)])


def compile_sql92(expression: str) -> Evaluator:
    """Compile ``expression``; the returned function gives True/False/None for a properties dict and
    may raise :class:`EvalError`. Raises :class:`FilterError` on a bad expression."""
    if not isinstance(expression, str):
        raise FilterError("SQL92 expression must be a string")
    try:
        return _Parser(expression).parse().fn
    except FilterError:
        raise
    except RecursionError as e:
        raise FilterError("SQL92 expression nested too deeply") from e
    except EvalError as e:  # constant BETWEEN bounds that do not compare
        raise FilterError(f"invalid SQL92 expression: {e}") from e
