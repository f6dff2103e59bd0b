"""Lightning parity harness: scenarios run against pytorch_lightning (reference JSON) and ember."""

from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Any

REFERENCE_PATH = Path(__file__).with_name("lightning_2_6.json")


def load_reference() -> dict:
    with open(REFERENCE_PATH) as f:
        return json.load(f)


def normalize(value: Any) -> Any:
    """Round-trip through JSON so tuples become lists, int keys become strings, etc."""
    return json.loads(json.dumps(value))


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0 and all(isinstance(v, str) for v in value)


def compare(expected: Any, actual: Any, atol: float, path: str = "$") -> list[str]:
    """Return a list of human-readable mismatches (empty when ``actual`` matches ``expected``).

    * dicts: identical key sets, values compared recursively
    * lists of strings (hook sequences): exactly equal, reported as a unified diff
    * other lists: same length, elements compared recursively
    * bool / int / str / None: exactly equal (and same type)
    * float: ``abs(expected - actual) <= atol`` (an int is accepted where a float is expected)
    """
    errors: list[str] = []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected a dict, got {type(actual).__name__}: {actual!r:.200}"]
        missing, extra = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
        if missing or extra:
            errors.append(f"{path}: keys differ; missing={missing} unexpected={extra}")
        for key in expected:
            if key in actual:
                errors += compare(expected[key], actual[key], atol, f"{path}.{key}")
        return errors
    if _is_str_list(expected) or _is_str_list(actual):
        if expected != actual:
            exp = expected if isinstance(expected, list) else [repr(expected)]
            act = actual if isinstance(actual, list) else [repr(actual)]
            diff = difflib.unified_diff(
                [str(x) for x in exp], [str(x) for x in act], "lightning", "actual", lineterm="", n=4
            )
            errors.append(f"{path}: sequences differ:\n" + "\n".join(diff))
        return errors
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{path}: expected a list, got {type(actual).__name__}: {actual!r:.200}"]
        if len(expected) != len(actual):
            errors.append(f"{path}: length {len(actual)} != expected {len(expected)}")
        for i, (e, a) in enumerate(zip(expected, actual)):
            errors += compare(e, a, atol, f"{path}[{i}]")
        return errors
    if isinstance(expected, float):
        if isinstance(actual, bool) or not isinstance(actual, (int, float)):
            return [f"{path}: expected float {expected!r}, got {actual!r}"]
        if math.isnan(expected) and math.isnan(actual):
            return []
        if not abs(expected - actual) <= atol:
            return [f"{path}: {actual!r} != expected {expected!r} (|diff|={abs(expected - actual):.3g} > {atol})"]
        return []
    # bool, int, str, None: exact (bool is checked before int because bool subclasses int)
    if type(expected) is not type(actual) or expected != actual:
        return [f"{path}: {actual!r} != expected {expected!r}"]
    return []
