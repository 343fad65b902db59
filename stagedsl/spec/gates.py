"""Gate conditions: a tiny expression language over metrics, parsed, never `eval`-ed.

Grammar (``and`` binds tighter than ``or``; every leaf is an explicit comparison)::

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" expr ")" | comparison
    comparison := operand OP operand            OP in >= > <= < == !=
    operand    := NUMBER | METRIC               METRIC like val/f1, train/loss

The parsed form is plain data (JSON-ready dicts) so it lives in the `Plan`:
``{"op": "and", "args": [...]}``, ``{"op": "not", "arg": ...}``,
``{"op": ">=", "left": {"metric": "val/f1"}, "right": {"number": 0.8}}``.
"""

from __future__ import annotations

import math
import operator
import re
from typing import Any, Mapping

_TOKEN = re.compile(
    r"\s*(?:(?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<op>>=|<=|==|!=|>|<)"
    r"|(?P<paren>[()])"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_./@-]*)"
    r"|(?P<bad>\S))"
)
_COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq, "!=": operator.ne}
_KEYWORDS = {"and", "or", "not"}


MAX_GATE_DEPTH = 32
"""How deep parentheses and `not` may nest in a condition."""
MAX_GATE_LENGTH = 4096
"""How many characters a condition may have."""


class GateSyntaxError(ValueError):
    """A gate expression that cannot be parsed; `column` is 1-based within the expression; `code` its error code."""

    def __init__(self, message: str, column: int, code: str = "E040"):
        super().__init__(message)
        self.column = column
        self.code = code


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            break
        kind = match.lastgroup
        value = match.group(kind)
        column = match.start(kind) + 1
        if kind == "bad":
            raise GateSyntaxError(f"unexpected character {value!r}", column)
        if kind == "word" and value in _KEYWORDS:
            kind = value
        tokens.append((kind, value, column))
        position = match.end()
    tokens.append(("end", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str):
        if len(text) > MAX_GATE_LENGTH:
            raise GateSyntaxError(f"the condition is {len(text)} characters long, more than {MAX_GATE_LENGTH}", 1, code="E015")
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.index]

    def take(self) -> tuple[str, str, int]:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def parse(self) -> dict:
        if self.peek()[0] == "end":
            raise GateSyntaxError("the condition is empty; write e.g. `val/f1 >= 0.80`", 1)
        node = self.or_expr()
        kind, value, column = self.peek()
        if kind != "end":
            raise GateSyntaxError(f"unexpected `{value}`; join conditions with `and` / `or`", column)
        return node

    def or_expr(self) -> dict:
        args = [self.and_expr()]
        while self.peek()[0] == "or":
            self.take()
            args.append(self.and_expr())
        return args[0] if len(args) == 1 else {"op": "or", "args": args}

    def and_expr(self) -> dict:
        args = [self.not_expr()]
        while self.peek()[0] == "and":
            self.take()
            args.append(self.not_expr())
        return args[0] if len(args) == 1 else {"op": "and", "args": args}

    def not_expr(self) -> dict:
        kind, _, column = self.peek()
        if kind == "not" or (kind == "paren" and self.peek()[1] == "("):
            self.depth += 1
            if self.depth > MAX_GATE_DEPTH:
                raise GateSyntaxError(f"parentheses and `not` nest more than {MAX_GATE_DEPTH} deep", column, code="E015")
            try:
                return self._nested(kind)
            finally:
                self.depth -= 1
        return self.comparison()

    def _nested(self, kind: str) -> dict:
        self.take()
        if kind == "not":
            return {"op": "not", "arg": self.not_expr()}
        node = self.or_expr()
        kind, value, column = self.take()
        if value != ")":
            raise GateSyntaxError("missing `)`", column)
        return node

    def operand(self) -> dict:
        kind, value, column = self.take()
        if kind == "number":
            return {"number": float(value)}
        if kind == "word":
            return {"metric": value}
        shown = value or "the end"
        raise GateSyntaxError(f"expected a metric name or a number, found {shown}", column)

    def comparison(self) -> dict:
        left = self.operand()
        kind, value, column = self.peek()
        if kind != "op":
            found = f"`{value}`" if value else "the end"
            raise GateSyntaxError(
                f"expected a comparison (>=, >, <=, <, ==, !=) after the operand, found {found}", column
            )
        self.take()
        right = self.operand()
        return {"op": value, "left": left, "right": right}


def parse_gate(text: str) -> dict:
    """Parse a gate condition into its plain-data AST; raises `GateSyntaxError`."""
    if not isinstance(text, str):
        raise GateSyntaxError(f"a condition is a string such as \"val/f1 >= 0.80\", found {text!r}", 1)
    return _Parser(text).parse()


def gate_metrics(expr: Mapping[str, Any]) -> list[str]:
    """The metric names an expression reads, in order of first appearance."""
    found: list[str] = []

    def walk(node: Mapping[str, Any]) -> None:
        if "metric" in node:
            if node["metric"] not in found:
                found.append(node["metric"])
        elif "number" in node:
            return
        elif node["op"] in ("and", "or"):
            for arg in node["args"]:
                walk(arg)
        elif node["op"] == "not":
            walk(node["arg"])
        else:
            walk(node["left"])
            walk(node["right"])

    walk(expr)
    return found


def evaluate_gate(expr: Mapping[str, Any], values: Mapping[str, float]) -> bool:
    """Evaluate a parsed condition against metric values; a missing or NaN metric fails it."""

    def value_of(node: Mapping[str, Any]) -> float:
        if "number" in node:
            return float(node["number"])
        name = node["metric"]
        if name not in values:
            return math.nan
        return float(values[name])

    def truth(node: Mapping[str, Any]) -> bool:
        op = node["op"]
        if op == "and":
            return all(truth(arg) for arg in node["args"])
        if op == "or":
            return any(truth(arg) for arg in node["args"])
        if op == "not":
            return not truth(node["arg"])
        left, right = value_of(node["left"]), value_of(node["right"])
        if math.isnan(left) or math.isnan(right):
            return False
        return bool(_COMPARE[op](left, right))

    return truth(expr)


def render_gate(expr: Mapping[str, Any]) -> str:
    """The canonical text of a parsed condition."""
    if "metric" in expr:
        return expr["metric"]
    if "number" in expr:
        return f"{expr['number']:g}"
    op = expr["op"]
    if op in ("and", "or"):
        return f" {op} ".join(f"({render_gate(a)})" if a.get("op") in ("and", "or") else render_gate(a) for a in expr["args"])
    if op == "not":
        inner = render_gate(expr["arg"])
        return f"not ({inner})" if expr["arg"].get("op") in ("and", "or") else f"not {inner}"
    return f"{render_gate(expr['left'])} {op} {render_gate(expr['right'])}"
