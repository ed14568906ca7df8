"""The subset of the AWS IoT SQL (version 2016-03-23) that the rule bridge evaluates.

Supported: `SELECT` with `*`, field paths, literals and the functions `topic()`, `topic(n)`,
`clientid()` and `timestamp()`, each optionally `AS alias`; `FROM '<topic filter>'` with `+`
and `#`; `WHERE` with comparisons (= <> != < <= > >=), AND, OR, NOT and parentheses.
Anything else is a `RuleError` at start that names the unsupported part.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paho.mqtt.client import topic_matches_sub

FUNCTIONS = ("topic", "clientid", "timestamp")
COMPARISONS = ("=", "<>", "!=", "<=", ">=", "<", ">")
_TOKEN = re.compile(
    r"\s*(?:(?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|(?P<string>'(?:[^']|'')*')|(?P<op><>|!=|<=|>=|[=<>(),.*])"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<other>\S))"
)
KEYWORDS = {"SELECT", "FROM", "WHERE", "AS", "AND", "OR", "NOT", "TRUE", "FALSE", "NULL"}


class RuleError(ValueError):
    """The rule uses SQL the bridge does not evaluate; the message names the part."""


class RuleEvaluationError(ValueError):
    """The rule cannot be applied to this message (AWS runs the rule's error action)."""


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    client_id: str = ""
    received_ms: int = 0


Expr = Callable[[Message, Any], Any]


@dataclass(frozen=True)
class SelectItem:
    expr: Expr | None  # None: `*`
    alias: str | None


@dataclass(frozen=True)
class Rule:
    sql: str
    topic_filter: str
    select: tuple[SelectItem, ...]
    where: Expr | None

    def matches(self, topic: str) -> bool:
        return topic_matches(self.topic_filter, topic)

    def apply(self, message: Message) -> bytes | None:
        """The rule's output payload, or None when WHERE is false. Raises RuleEvaluationError."""
        document = parse_json(message.payload)
        only_star = len(self.select) == 1 and self.select[0].expr is None
        if document is None and not only_star:
            raise RuleEvaluationError("payload is not JSON, so the SELECT cannot add fields to it")
        if self.where is not None and self.where(message, document) is not True:
            return None
        if document is None:
            return message.payload
        out: dict[str, Any] = {}
        for item in self.select:
            if item.expr is None:
                if not isinstance(document, dict):
                    raise RuleEvaluationError("SELECT * needs a JSON object payload to add fields to")
                out.update(document)
            else:
                value = item.expr(message, document)
                if value is not _MISSING:
                    out[item.alias or "value"] = value
        return _encode(out)


_MISSING = object()


def parse_json(payload: bytes) -> Any:
    """The payload as JSON the way AWS IoT's rules engine reads it (UTF-8 only), or None.

    `json.loads` of bytes would guess UTF-16/32 from the first bytes and accept what AWS does not;
    NaN and Infinity are not JSON (RFC 8259); nesting deeper than the interpreter's recursion limit
    is not JSON a rule can evaluate either. A number beyond a double (1e400) or of more digits than
    an integer here holds is JSON: it is kept as its text and passed on as written, for the
    processor to quarantine with its reason.
    """
    try:
        return _STRICT_JSON.decode(payload.decode("utf-8"))
    except (ValueError, RecursionError):
        return None


@dataclass(frozen=True)
class HugeNumber:
    """A JSON number no double or integer here holds, kept as written (a WHERE that compares it
    fails, as a rule's evaluation error)."""

    text: str


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON number")


def _float(text: str) -> float | HugeNumber:
    value = float(text)
    return value if math.isfinite(value) else HugeNumber(text)


def _int(text: str) -> int | HugeNumber:
    try:
        return int(text)
    except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
        return HugeNumber(text)


_STRICT_JSON = json.JSONDecoder(parse_constant=_not_json, parse_float=_float, parse_int=_int)


def _encode(document: dict[str, Any]) -> bytes:
    """The rule's output as compact JSON, each huge number written back as it came."""
    try:
        return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
    except TypeError:  # a HugeNumber somewhere in it
        pass
    huge: list[str] = []
    marker = f"\x00{secrets.token_hex(8)}:"

    def placeholder(value: Any) -> Any:
        if isinstance(value, HugeNumber):
            huge.append(value.text)
            return f"{marker}{len(huge) - 1}"
        if isinstance(value, dict):
            return {k: placeholder(v) for k, v in value.items()}
        if isinstance(value, list):
            return [placeholder(v) for v in value]
        return value

    text = json.dumps(placeholder(document), separators=(",", ":"), allow_nan=False)
    quoted = json.dumps(marker)[:-1]  # the marker as json.dumps writes it, without its closing quote
    for index, number in enumerate(huge):
        text = text.replace(f'{quoted}{index}"', number, 1)
    return text.encode()


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter semantics, paho-mqtt's own: `+` is one level, `#` the rest (including none),
    and neither matches a first level that starts with `$` (`$aws/...`), as in MQTT and AWS IoT."""
    return bool(topic_matches_sub(topic_filter, topic))


class _Parser:
    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.tokens: list[tuple[str, str]] = []
        for match in _TOKEN.finditer(sql):
            kind = match.lastgroup or "other"
            text = match.group(kind)
            if kind == "other":
                raise RuleError(f"unsupported character {text!r} in rule SQL: {sql}")
            if kind == "ident" and text.upper() in KEYWORDS:
                kind, text = "kw", text.upper()
            self.tokens.append((kind, text))
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else ("end", "")

    def take(self, kind: str | None = None, text: str | None = None) -> str:
        tok_kind, tok_text = self.peek()
        if (kind and tok_kind != kind) or (text and tok_text != text):
            raise RuleError(f"expected {text or kind} but found {tok_text or 'the end'!r} in: {self.sql}")
        self.pos += 1
        return tok_text

    def accept(self, kind: str, text: str) -> bool:
        if self.peek() == (kind, text):
            self.pos += 1
            return True
        return False

    def parse(self) -> Rule:
        self.take("kw", "SELECT")
        items = [self.select_item()]
        while self.accept("op", ","):
            items.append(self.select_item())
        self.take("kw", "FROM")
        topic_filter = _unquote(self.take("string"))
        where = None
        if self.accept("kw", "WHERE"):
            where = self.expression()
        if self.peek()[0] != "end":
            raise RuleError(f"unsupported SQL after the statement: {self.peek()[1]!r} in: {self.sql}")
        return Rule(self.sql, topic_filter, tuple(items), where)

    def select_item(self) -> SelectItem:
        if self.accept("op", "*"):
            return SelectItem(None, None)
        start = self.pos
        expr = self.expression()
        if self.accept("kw", "AS"):
            return SelectItem(expr, self.take("ident"))
        kind, text = self.tokens[start]
        if kind != "ident":
            raise RuleError(f"give {text!r} a name with AS in: {self.sql}")
        is_call = self.tokens[start + 1] == ("op", "(")
        # AWS names an unaliased field after its last path segment, a function after itself
        return SelectItem(expr, text if is_call else self.tokens[self.pos - 1][1])

    def expression(self) -> Expr:
        left = self.conjunction()
        while self.accept("kw", "OR"):
            left = _either(left, self.conjunction())
        return left

    def conjunction(self) -> Expr:
        left = self.negation()
        while self.accept("kw", "AND"):
            left = _both(left, self.negation())
        return left

    def negation(self) -> Expr:
        if self.accept("kw", "NOT"):
            inner = self.negation()
            return lambda m, d: inner(m, d) is not True
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.primary()
        kind, text = self.peek()
        if kind == "op" and text in COMPARISONS:
            self.pos += 1
            right = self.primary()
            return _compare(text, left, right)
        if kind == "op" and text in "+-*/%":
            raise RuleError(f"arithmetic ({text}) is not supported by the local rule bridge: {self.sql}")
        return left

    def primary(self) -> Expr:
        kind, text = self.peek()
        if kind == "number":
            self.pos += 1
            value: Any = float(text) if any(c in text for c in ".eE") else int(text)
            return lambda m, d: value
        if kind == "string":
            self.pos += 1
            literal = _unquote(text)
            return lambda m, d: literal
        if kind == "kw" and text in ("TRUE", "FALSE", "NULL"):
            self.pos += 1
            constant = {"TRUE": True, "FALSE": False, "NULL": None}[text]
            return lambda m, d: constant
        if self.accept("op", "("):
            inner = self.expression()
            self.take("op", ")")
            return inner
        if kind == "ident" and self.peek(1) == ("op", "("):
            return self.function()
        if kind == "ident":
            path = [self.take("ident")]
            while self.accept("op", "."):
                path.append(self.take("ident"))
            return lambda m, d: _lookup(d, path)
        raise RuleError(f"unsupported expression at {text or 'the end'!r} in: {self.sql}")

    def function(self) -> Expr:
        name = self.take("ident")
        if name.lower() not in FUNCTIONS:
            raise RuleError(
                f"function {name}() is not supported by the local rule bridge (supported: "
                f"{', '.join(f + '()' for f in FUNCTIONS)})"
            )
        self.take("op", "(")
        args = []
        while not self.accept("op", ")"):
            args.append(int(self.take("number")))
            self.accept("op", ",")
        fn = name.lower()
        if fn == "topic" and args:
            index = args[0]
            return lambda m, d: _topic_level(m.topic, index)
        if fn == "topic":
            return lambda m, d: m.topic
        if fn == "clientid":
            return lambda m, d: m.client_id
        return lambda m, d: m.received_ms or int(time.time() * 1000)


def _topic_level(topic: str, index: int) -> Any:
    levels = topic.split("/")
    return levels[index - 1] if 1 <= index <= len(levels) else _MISSING


def _lookup(document: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(document, dict) or key not in document:
            return _MISSING
        document = document[key]
    return document


def _either(a: Expr, b: Expr) -> Expr:
    return lambda m, d: a(m, d) is True or b(m, d) is True


def _both(a: Expr, b: Expr) -> Expr:
    return lambda m, d: a(m, d) is True and b(m, d) is True


def _compare(op: str, left: Expr, right: Expr) -> Expr:
    def compare(m: Message, d: Any) -> Any:
        a, b = left(m, d), right(m, d)
        if a is _MISSING or b is _MISSING:
            return _MISSING  # Undefined in AWS IoT SQL: the WHERE clause is not true
        numeric = (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and not isinstance(a, bool)
            and not isinstance(b, bool)
        )
        if op in ("=", "<>", "!="):
            equal = a == b if numeric or type(a) is type(b) else False
            return equal if op == "=" else not equal
        if not (numeric or (isinstance(a, str) and isinstance(b, str))):
            return _MISSING
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]

    return compare


def _unquote(text: str) -> str:
    return text[1:-1].replace("''", "'")


def parse_rule(sql: str) -> Rule:
    """Parse a rule statement; RuleError names any part the bridge cannot evaluate."""
    if sql.lstrip()[:4].upper() == "SET ":
        raise RuleError("SET clauses are not supported by the local rule bridge")
    return _Parser(sql).parse()
