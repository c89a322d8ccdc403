"""Request models of the web endpoints, read from the public API's signatures and docstrings.

Each endpoint's body is a pydantic model built from the keyword arguments of the API function it calls
(:func:`signature_fields`, :func:`request_model`), so the page and the API cannot drift apart; ``/api/options``
describes the same fields to the page's forms (:func:`describe_fields`). Used by :mod:`estimator.serve.web`.
"""

import inspect
import re
import typing
from typing import Any

import estimator

#: keyword arguments of the API that the web layer supplies itself (never request fields)
_SUPPLIED = ("extra_models", "predictor", "catalog", "calibration")


def docstring_args(func) -> dict[str, str]:
    """Google-style ``Args:`` entries of ``func``'s docstring (``a, b: text`` gives both names the text)."""
    text = inspect.getdoc(func) or ""
    match = re.search(r"^Args:\n(.*?)(?:^\S|\Z)", text, flags=re.S | re.M)
    out: dict[str, str] = {}
    if not match:
        return out
    current: list[str] = []
    for line in match.group(1).splitlines():
        entry = re.match(r"^ {4}([\w*, /]+?):\s*(.*)$", line)
        if entry:
            current = [n.strip().lstrip("*") for n in re.split(r"[,/]", entry.group(1)) if n.strip()]
            for name in current:
                out[name] = entry.group(2).strip()
        elif line.strip() and current:
            for name in current:
                out[name] += " " + line.strip()
    return out


def signature_fields(func, *, drop: typing.Iterable[str] = ()) -> dict[str, tuple[Any, Any, str]]:
    """``{name: (type, default, help)}`` for ``func``'s keyword arguments, less those the web layer supplies."""
    hints = typing.get_type_hints(func)
    helps = docstring_args(func)
    skipped = set(_SUPPLIED) | set(drop)
    fields = {}
    for name, parameter in inspect.signature(func).parameters.items():
        if name in skipped or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[name] = (hints.get(name, Any), default, helps.get(name, ""))
    return fields


def request_model(name: str, fields: dict[str, tuple[Any, Any, str]], doc: str):
    """A pydantic model of the fields (unknown fields refused), plus the uploaded config as ``hf_config``."""
    from pydantic import ConfigDict, Field, create_model

    definitions = {key: (kind, Field(default, description=help_text or None))
                   for key, (kind, default, help_text) in fields.items()}
    definitions["hf_config"] = (dict[str, Any] | None, Field(None, description=(
        "a Hugging Face config.json (the JSON object) for a model not in the catalog; `model` then names it")))
    model = create_model(name, __config__=ConfigDict(extra="forbid"), **definitions)
    model.__doc__ = doc
    return model


def cost_fields() -> dict[str, tuple[Any, Any, str]]:
    """The fields of ``estimator.CostInputs`` (prices, grid, PUE, host power, load) as plan request fields; their
    limits are checked by CostInputs itself, so a bad value gets the CLI's message."""
    return {name: (field.annotation, field.default, field.description or "")
            for name, field in estimator.CostInputs.model_fields.items()}


def cost_inputs(values: dict[str, Any]):
    """``estimator.CostInputs`` from the given fields (None when none given), with the CLI's one-line message on a
    bad combination (``estimator/cli/cost_options.py``)."""
    if not values:
        return None
    from pydantic import ValidationError

    try:
        return estimator.CostInputs(**values)
    except ValidationError as exc:
        error = ValueError("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors()))
        error.fields = tuple(str(e["loc"][0]) for e in exc.errors() if e.get("loc"))  # the page's field
        raise error from None


def describe_fields(model) -> list[dict[str, Any]]:
    """The fields of a request model for the page's forms: name, JSON-schema type, default, help, choices."""
    schema = model.model_json_schema()
    out = []
    for name, prop in schema["properties"].items():
        variants = prop.get("anyOf", [prop])
        types = [v.get("type") for v in variants if v.get("type") not in (None, "null")]
        choices = next((v["enum"] for v in variants if "enum" in v), None)
        out.append({"name": name, "types": types, "default": prop.get("default"), "choices": choices,
                    "required": name in schema.get("required", []), "help": prop.get("description", "")})
    return out
