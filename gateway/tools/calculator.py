"""A safe calculator and unit converter: arithmetic from an AST walk, never eval.

Why an AST whitelist: the expression comes from speech or from a model, so
only numbers, + - * / // % **, parentheses and a few math functions are
allowed, with bounds on exponent size and expression length.
"""
from __future__ import annotations

import ast
import math
import operator
import re

from gateway.tools.base import ToolError, ToolResult

MAX_CHARS = 200
MAX_EXPONENT = 1000
_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS = {"sqrt": math.sqrt, "abs": abs, "round": round, "log": math.log, "log10": math.log10,
          "sin": math.sin, "cos": math.cos, "tan": math.tan, "exp": math.exp}
_CONSTS = {"pi": math.pi, "e": math.e}
_WORDS = [(r"\bplus\b", "+"), (r"\bminus\b", "-"), (r"\btimes\b|\bmultiplied by\b|\bx\b", "*"),
          (r"\bdivided by\b|\bover\b", "/"), (r"\bto the power of\b", "**"), (r"\bsquared\b", "**2"),
          (r"\bsquare root of\b", "sqrt"), (r"(\d)\s*%\s*of\b", r"\1/100*"), (r"\bpercent of\b", "/100*")]

# unit -> (dimension, factor to the base unit)
_UNITS = {
    "m": ("length", 1.0), "meter": ("length", 1.0), "km": ("length", 1000.0), "kilometer": ("length", 1000.0),
    "cm": ("length", 0.01), "centimeter": ("length", 0.01), "mm": ("length", 0.001), "millimeter": ("length", 0.001),
    "mile": ("length", 1609.344), "mi": ("length", 1609.344), "foot": ("length", 0.3048), "feet": ("length", 0.3048),
    "ft": ("length", 0.3048), "inch": ("length", 0.0254), "inches": ("length", 0.0254), "yard": ("length", 0.9144),
    "kg": ("mass", 1.0), "kilogram": ("mass", 1.0), "g": ("mass", 0.001), "gram": ("mass", 0.001),
    "pound": ("mass", 0.45359237), "lb": ("mass", 0.45359237), "lbs": ("mass", 0.45359237), "ounce": ("mass", 0.028349523125),
    "oz": ("mass", 0.028349523125), "l": ("volume", 1.0), "liter": ("volume", 1.0), "litre": ("volume", 1.0),
    "ml": ("volume", 0.001), "milliliter": ("volume", 0.001), "gallon": ("volume", 3.785411784),
    "cup": ("volume", 0.2365882365), "kmh": ("speed", 1 / 3.6), "km/h": ("speed", 1 / 3.6), "mph": ("speed", 0.44704),
    "m/s": ("speed", 1.0), "celsius": ("temperature", 0), "c": ("temperature", 0), "fahrenheit": ("temperature", 0),
    "f": ("temperature", 0), "kelvin": ("temperature", 0), "k": ("temperature", 0),
}
_CONVERT = re.compile(r"^(?:convert\s+|how many\s+)?(-?[\d.]+)\s*([a-z/°]+)\s+(?:to|in|into)\s+([a-z/°]+)\??$")


def _unit(name: str) -> tuple[str, str, float]:
    key = name.lower().strip("°").rstrip(".")
    for cand in (key, key[:-1] if key.endswith("s") else key, key.replace("metre", "meter")):
        if cand in _UNITS:
            dim, factor = _UNITS[cand]
            return cand, dim, factor
    raise ToolError(f"unknown unit {name!r}", f"I don't know the unit {name}.", code="INVALID_ARGUMENT", retryable=False)


def _to_kelvin(value: float, unit: str) -> float:
    return {"c": value + 273.15, "celsius": value + 273.15, "f": (value - 32) * 5 / 9 + 273.15,
            "fahrenheit": (value - 32) * 5 / 9 + 273.15}.get(unit, value)


def _from_kelvin(value: float, unit: str) -> float:
    return {"c": value - 273.15, "celsius": value - 273.15, "f": (value - 273.15) * 9 / 5 + 32,
            "fahrenheit": (value - 273.15) * 9 / 5 + 32}.get(unit, value)


def convert(value: float, src: str, dst: str) -> float:
    s, sdim, sf = _unit(src)
    d, ddim, df = _unit(dst)
    if sdim != ddim:
        raise ToolError(f"cannot convert {src} ({sdim}) to {dst} ({ddim})", f"I can't convert {src} to {dst}.",
                        code="INVALID_ARGUMENT", retryable=False)
    if sdim == "temperature":
        return _from_kelvin(_to_kelvin(value, s), d)
    return value * sf / df


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTS:
        return _CONSTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError("exponent too large")
        return _BIN[type(node.op)](left, right)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS
            and len(node.args) == 1 and not node.keywords):
        return _FUNCS[node.func.id](_eval(node.args[0]))
    raise ValueError(f"{type(node).__name__} is not allowed")


def _fmt(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.6g}" if abs(value) >= 1e-4 else f"{value:.3e}"


def calculate(expression: str) -> ToolResult:
    """Evaluate arithmetic ("3 times (4 + 5)") or a conversion ("5 km to miles")."""
    text = expression.strip().lower().rstrip("?").strip()
    for prefix in ("what is", "what's", "calculate", "compute"):
        if text.startswith(prefix):
            text = text[len(prefix):].strip()
    if not text or len(text) > MAX_CHARS:
        raise ToolError(f"expression empty or over {MAX_CHARS} chars", "That calculation is too long for me.",
                        code="INVALID_ARGUMENT", retryable=False)
    m = _CONVERT.match(text)
    if m:
        value, src, dst = float(m.group(1)), m.group(2), m.group(3)
        result = convert(value, src, dst)
        answer = _fmt(round(result, 4))
        return ToolResult("calculator", {"value": value, "from": src, "to": dst, "result": answer},
                          f"{_fmt(value)} {src} is {answer} {dst}.", (answer,))
    for pattern, repl in _WORDS:
        text = re.sub(pattern, repl, text)
    try:
        value = _eval(ast.parse(text, mode="eval"))
    except ZeroDivisionError as exc:
        raise ToolError("division by zero", "You can't divide by zero.", code="INVALID_ARGUMENT", retryable=False) from exc
    except (SyntaxError, ValueError, TypeError, OverflowError) as exc:
        raise ToolError(f"cannot evaluate {expression!r}: {exc}", "I couldn't work that out.",
                        code="INVALID_ARGUMENT", retryable=False) from exc
    answer = _fmt(value)
    return ToolResult("calculator", {"expression": text, "result": answer}, f"That's {answer}.", (answer,))
