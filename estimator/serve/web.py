"""``joules-estimate serve``: a what-if explorer in the browser over JSON endpoints (FastAPI, optional ``[web]`` extra).

The page (``estimator/serve/static/``) only calls the endpoints below, and the endpoints only call the public API
(``estimator.estimate``, ``what_if``, ``plan``, ``explain_change``), so every number the page shows is a number the
API returned. Scripts can use the same endpoints (OpenAPI at ``/docs``):

- ``GET  /api/catalog``      models, tasks and GPUs (keys, names, aliases, in the training data or not)
- ``GET  /api/options``      the request fields of each endpoint, read from the API's signatures and docstrings
- ``POST /api/model-config`` check a Hugging Face ``config.json`` (the JSON object) and describe the model
- ``POST /api/frontier``     ``estimate`` for each of ``gpus``: ``{"estimates": [Estimate...], "errors": [...]}``
- ``POST /api/what-if``      ``what_if(base, **changes)`` and the attribution of the change
- ``POST /api/plan``         ``plan(...)``: every keyword ``plan`` takes

Bad input answers 422 with ``{"error": "<the CLI's one-line message>", "field": "<request field or null>"}``;
nothing answers with a traceback. Bodies are capped (:data:`MAX_BODY_BYTES`), requests are rate-limited per
client, and an uploaded config is parsed in a temporary directory that is removed at once.
"""

import functools
import json
import re
import tempfile
import threading
import time
import typing
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

import estimator
from estimator.serve.web_calibration import calibration_kwargs, calibration_note
from estimator.serve.web_fields import cost_fields, cost_inputs, describe_fields, request_model, signature_fields

#: largest request body accepted, bytes (a Hugging Face config.json is typically 1-10 KB)
MAX_BODY_BYTES = 300_000
#: largest uploaded config.json, bytes (serialised JSON)
MAX_CONFIG_BYTES = 256_000
#: most GPU types in one frontier request, and most values in one list field (bounds the work per request)
MAX_GPUS = 8
MAX_LIST_VALUES = 32
STATIC_DIR = Path(__file__).parent / "static"


# ------------------------------------------------------------------------------------------------- messages

def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def one_line(exc: BaseException) -> str:
    """The CLI's message for an exception (``estimator/cli/options.py``: whitespace collapsed, or the first line;
    options that do not go together
    named as the CLI names them, ``--max-itl-ms``, when the exception can render itself)."""
    render = getattr(exc, "render", None)
    message = render(_flag) if callable(render) and hasattr(exc, "fields") else str(exc)
    message = message.strip() or type(exc).__name__
    return " ".join(message.split()) if "\n" not in message else message.splitlines()[0]


def guess_field(exc: BaseException, fields: typing.Iterable[str]) -> str | None:
    """The request field an error is about: the catalog kind of an unknown name, else a field the message names."""
    kind = getattr(exc, "kind", None)
    if kind in ("model", "task", "gpu"):
        return kind
    named = [name for name in getattr(exc, "fields", ()) if name in fields]
    if named:
        return named[0]
    message = str(exc)
    for name in sorted(fields, key=len, reverse=True):
        if re.search(rf"(?<![\w-])(--)?{re.escape(name)}(?![\w])", message) or \
                re.search(rf"--{re.escape(name.replace('_', '-'))}(?![\w-])", message):
            return name
    return None


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input (as in the CLI: exit 2): unknown names, bad numbers, malformed files."""
    from estimator.catalog.catalog import CatalogError, UnknownKeyError

    return (UnknownKeyError, CatalogError, ValueError, OSError)


# ------------------------------------------------------------------------------------------------ services

def extra_models_from(model: str | None, hf_config: dict | None) -> tuple[str | None, dict | None]:
    """The model name and ``extra_models`` for an uploaded config (parsed in a temporary directory)."""
    if hf_config is None:
        return model, None
    if len(json.dumps(hf_config)) > MAX_CONFIG_BYTES:
        raise ValueError(f"config.json is larger than {MAX_CONFIG_BYTES // 1000} KB")
    name = model or str(hf_config.get("_name_or_path") or "").strip() or "uploaded-model"
    from estimator.catalog.hf_config import load_model_description

    with tempfile.TemporaryDirectory(prefix="joules-web-") as folder:
        path = Path(folder) / "config.json"
        path.write_text(json.dumps(hf_config), encoding="utf-8")
        spec = load_model_description(path, model_id=name)
    spec = spec.model_copy(update={"sources": [f"uploaded config.json ({name})"]})
    return name, {name: spec}


def catalog_listing() -> dict[str, list[dict[str, Any]]]:
    """Models, tasks and GPUs of the catalog, each marked when it is in the predictor's training data."""
    from estimator.catalog.catalog import load_catalog

    catalog = load_catalog()
    domain = estimator.load_predictor().card.domain
    trained = {kind: {key for family in domain.values() for key in getattr(family, f"{kind}s", [])}
               for kind in ("model", "task", "gpu")}
    aliases: dict[str, dict[str, list[str]]] = {}
    for kind, table in catalog.aliases.items():
        for alias, key in table.items():
            aliases.setdefault(kind, {}).setdefault(key, []).append(alias)

    def common(kind: str, key: str) -> dict[str, Any]:
        return {"key": key, "aliases": sorted(aliases.get(kind, {}).get(key, [])), "trained": key in trained[kind]}

    return {
        "models": [{**common("model", k), "display_name": m.display_name, "kind": m.kind, "modality": m.modality,
                    "total_params_billions": m.total_params_billions,
                    "output_tokens": catalog.known_output_tokens(k), "input_tokens": catalog.known_input_tokens(k)}
                   for k, m in catalog.models.items()],
        "tasks": [{**common("task", k), "kind": t.kind, "modality": t.modality, "dataset": t.dataset,
                   "mean_input_tokens": t.mean_input_tokens, "mean_output_tokens": t.mean_output_tokens}
                  for k, t in catalog.tasks.items()],
        "gpus": [{**common("gpu", k), "display_name": g.display_name, "memory_gb": g.memory_gb,
                  "tdp_watts": g.tdp_watts} for k, g in catalog.gpus.items()],
    }


def no_fit_message(est) -> str:
    """The CLI's message when nothing fits on a GPU (``estimator/cli/main.py``, frontier command)."""
    by_reason: dict[str, list[str]] = {}
    for prediction in est.infeasible:
        by_reason.setdefault(prediction.reason, []).append(str(prediction.configuration.num_gpus))
    reasons = "; ".join(f"{', '.join(counts)} x {est.gpu_model}: {reason}" for reason, counts in by_reason.items())
    return f"no configuration of {est.model_id} fits on {est.gpu_model}: {reasons}"


def frontier_payload(estimates: list, errors: list[dict[str, str]]) -> dict[str, Any]:
    """The frontier endpoint's answer (also what ``--html`` embeds): estimates as JSON, per-GPU errors."""
    return {"estimates": [e.model_dump(mode="json") for e in estimates], "errors": errors}


def what_if_payload(result, attribution, attribution_error: str = "") -> dict[str, Any]:
    """The what-if endpoint's answer (also what ``--html`` embeds)."""
    return {"what_if": result.model_dump(mode="json"),
            "attribution": attribution.model_dump(mode="json") if attribution is not None else None,
            "attribution_error": attribution_error}


def plan_payload(result) -> dict[str, Any]:
    """The plan endpoint's answer (also what ``--html`` embeds): the Plan as JSON."""
    return {"plan": result.model_dump(mode="json")}


def explain_what_if(result, extra_models, **predictor_kwargs) -> tuple[Any, str]:
    """The attribution of a what-if's change, or None and why (attribution is an extra: never fatal);
    ``predictor_kwargs`` (``predictor=`` or ``calibration=``) must be those the what-if was predicted with."""
    try:
        return estimator.explain_change(result, extra_models=extra_models, **predictor_kwargs), ""
    except Exception as exc:  # noqa: BLE001 - the what-if itself stands; the page shows why the waterfall is missing
        return None, one_line(exc)


class RateLimiter:
    """A token bucket per client address: ``burst`` requests at once, refilled at ``per_sec``."""

    def __init__(self, per_sec: float, burst: int):
        self.per_sec, self.burst = per_sec, burst
        self._tokens: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        """Take one token for ``client``; False when its bucket is empty."""
        now = time.monotonic()
        with self._lock:
            if len(self._tokens) > 10_000:  # bound the table itself
                self._tokens.clear()
            tokens, last = self._tokens.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.per_sec)
            allowed = tokens >= 1.0
            self._tokens[client] = (tokens - 1.0 if allowed else tokens, now)
            return allowed


def plotly_js_path() -> Path:
    """plotly.min.js as shipped inside the ``plotly`` wheel (no network; imported by path, not as a module)."""
    spec = importlib_util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the page needs the plotly package (pip install -e '.[web]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise ImportError(f"plotly.min.js not found at {path}")
    return path


@functools.cache
def static_text(name: str) -> str:
    """A file of the page (index.html, app.js, style.css) or plotly.min.js."""
    path = plotly_js_path() if name == "plotly.min.js" else STATIC_DIR / name
    return path.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------------ app

def _error_response(status: int, message: str, field: str | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message, "field": field}, status_code=status)


def _check_lists(body: dict[str, Any]) -> None:
    for name, value in body.items():
        if isinstance(value, list | tuple) and len(value) > MAX_LIST_VALUES:
            raise ValueError(f"{name}: at most {MAX_LIST_VALUES} values per request")


def create_app(*, calibration: Path | None = None, rate_per_sec: float = 20.0, burst: int = 60):
    """The FastAPI app: the page, its static files and the JSON endpoints (see the module docstring).

    Args:
        calibration: a CAL.json applied to every prediction (read once).
        rate_per_sec, burst: the per-client rate limit (requests per second, and at once).
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, Response
    from pydantic import BaseModel, ConfigDict, Field
    from starlette.exceptions import HTTPException

    cal = calibration_kwargs(calibration)
    lock = threading.Lock()  # one prediction at a time: the predictor is CPU-bound and shared
    limiter = RateLimiter(rate_per_sec, burst)
    frontier_fields = signature_fields(estimator.estimate, drop=("gpu",))
    frontier_fields = {"model": frontier_fields.pop("model"), "task": frontier_fields.pop("task"),
                       "gpus": (list[str], ..., "GPU types (catalog keys or aliases), one frontier each"),
                       **frontier_fields}
    FrontierRequest = request_model("FrontierRequest", frontier_fields, "Arguments of estimate() per GPU type.")
    cost_names = cost_fields()
    PlanRequest = request_model("PlanRequest", {**signature_fields(estimator.plan, drop=("costs",)), **cost_names},
                                "Arguments of plan(); the cost fields are those of estimator.CostInputs.")

    class WhatIfRequest(BaseModel):
        """``what_if(base, **changes)``: friendly keys (model, task, gpu, num_gpus, batch, precision, ...)."""

        model_config = ConfigDict(extra="forbid")
        base: dict[str, str | int | float | None]
        changes: dict[str, str | int | float | None] = Field(default_factory=dict)
        hf_config: dict[str, Any] | None = None
        explain: bool = Field(True, description="also attribute the change (explain_change)")

    class ModelConfigRequest(BaseModel):
        """An uploaded Hugging Face config.json and an optional name for it."""

        model_config = ConfigDict(extra="forbid")
        hf_config: dict[str, Any]
        model: str | None = None

    app = FastAPI(title="joules-estimate", version=getattr(estimator, "__version__", "0.1.0"),
                  description="Time, energy and performance per watt of generative AI inference: the JSON "
                              "endpoints behind the what-if explorer. Errors: 422 {error, field}.")

    @app.middleware("http")
    async def limits(request: Request, call_next):
        client = request.client.host if request.client else "local"
        if request.url.path.startswith("/api/") and not limiter.allow(client):
            return _error_response(429, "too many requests; slow down (rate limit per client)")
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None:
                return _error_response(411, "a Content-Length header is required")
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                return _error_response(413, f"request body larger than {MAX_BODY_BYTES // 1000} KB")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part != "body"]
        field = location[0] if location else None  # deeper parts name pydantic's union members: left out
        message = first.get("msg", "invalid request")
        return _error_response(422, f"{field}: {message}" if field else message, field)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return _error_response(exc.status_code, str(exc.detail))

    fields = [*frontier_fields, *PlanRequest.model_fields, "base", "changes", "precision", "num_gpus", "batch"]

    async def user_error(request: Request, exc: Exception):
        return _error_response(422, one_line(exc), guess_field(exc, fields))

    for error_type in user_error_types():
        app.add_exception_handler(error_type, user_error)

    @app.exception_handler(Exception)
    async def any_error(request: Request, exc: Exception):  # logged by the server; the client gets one line
        return _error_response(500, f"internal error ({type(exc).__name__}: {one_line(exc)})")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return HTMLResponse(static_text("index.html"))

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        types = {".js": "text/javascript", ".css": "text/css"}
        if name not in ("app.js", "style.css", "plotly.min.js"):
            raise HTTPException(404, f"no static file {name!r}")
        return Response(static_text(name), media_type=types[Path(name).suffix],
                        headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        """Liveness, and whether a calibration is applied (its CAL.json, and which levels it moved)."""
        return {"status": "ok", "calibration": str(calibration) if calibration else None,
                "calibration_note": calibration_note(cal)}

    @app.get("/api/catalog")
    def catalog() -> dict[str, Any]:
        """Models, tasks and GPUs the other endpoints accept (``trained``: in the predictor's training data)."""
        with lock:
            return {**catalog_listing(), "calibration": calibration_note(cal)}

    @app.get("/api/options")
    def options() -> dict[str, Any]:
        """The request fields of /api/frontier and /api/plan (from the API's signatures and docstrings)."""
        return {"frontier": describe_fields(FrontierRequest), "plan": describe_fields(PlanRequest),
                "what_if": describe_fields(WhatIfRequest)}

    @app.post("/api/model-config")
    def model_config(body: ModelConfigRequest) -> dict[str, Any]:
        """Check an uploaded config.json: the model description the other endpoints will use for it."""
        name, extra = extra_models_from(body.model, body.hf_config)
        return {"model": name, "spec": extra[name].model_dump(mode="json")}

    @app.post("/api/frontier", response_model=None, responses={200: {"description": (
        '{"estimates": [Estimate, ...], "errors": [{"gpu", "error", "field"}, ...]}: one Estimate (as '
        'estimator.estimate returns it, see the CLI\'s --json) per GPU type that could be predicted')}})
    def frontier(body: FrontierRequest) -> Response:  # type: ignore[valid-type]
        """``estimate()`` for each GPU type: the frontier, min-energy points and why a GPU cannot fit."""
        values = body.model_dump(exclude_none=True)
        _check_lists(values)
        gpus = list(dict.fromkeys(values.pop("gpus")))
        if not gpus or len(gpus) > MAX_GPUS:
            raise ValueError(f"gpus: choose 1 to {MAX_GPUS} GPU types")
        model, extra = extra_models_from(values.pop("model"), values.pop("hf_config", None))
        estimates, errors = [], []
        for gpu in gpus:
            try:
                with lock:
                    text, no_fit = _cached_estimate(json.dumps([model, gpu, values], sort_keys=True, default=str),
                                                    extra, cal)
            except user_error_types() as exc:
                if getattr(exc, "kind", None) != "gpu":
                    raise
                errors.append({"gpu": gpu, "error": one_line(exc), "field": "gpus"})
                continue
            if no_fit:
                errors.append({"gpu": gpu, "error": no_fit, "field": "gpus"})
            estimates.append(text)
        # the same JSON as frontier_payload, assembled from each estimate's memoised serialisation
        return Response(f'{{"estimates": [{", ".join(estimates)}], "errors": {json.dumps(errors)}}}',
                        media_type="application/json")

    @app.post("/api/what-if")
    def what_if(body: WhatIfRequest) -> dict[str, Any]:
        """``what_if(base, **changes)`` side by side with deltas, and the attribution of the change."""
        base = {k: v for k, v in body.base.items() if v not in (None, "")}
        changes = {k: v for k, v in body.changes.items() if v not in (None, "")}
        model, extra = extra_models_from(base.get("model"), body.hf_config)
        base["model"] = model
        with lock:
            result = estimator.what_if(base, extra_models=extra, **cal, **changes)
            attribution, why = explain_what_if(result, extra, **cal) if body.explain else (None, "")
        return what_if_payload(result, attribution, why)

    @app.post("/api/plan")
    def plan(body: PlanRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        """``plan()``: the lowest-energy fleet for a demand (or the demand a budget serves), and alternatives."""
        values = body.model_dump(exclude_none=True)
        _check_lists(values)
        model, extra = extra_models_from(values.pop("model"), values.pop("hf_config", None))
        costs = cost_inputs({name: values.pop(name) for name in cost_names if name in values})
        with lock:
            result = estimator.plan(model, values.pop("task"), extra_models=extra, **cal, **values,
                                    **({"costs": costs} if costs is not None else {}))
        return plan_payload(result)

    return app


_ESTIMATES: dict[str, Any] = {}


def _cached_estimate(key: str, extra_models: dict | None, cal: dict[str, Any]) -> tuple[str, str]:
    """``estimate()`` as JSON, and the CLI's message when nothing fits ('' otherwise), memoised by the arguments
    (going back to earlier inputs or switching GPUs on and off answers without predicting again)."""
    full_key = json.dumps([key, {k: v.model_dump(mode="json") for k, v in (extra_models or {}).items()},
                           {k: str(v) for k, v in cal.items()}], sort_keys=True)
    if full_key not in _ESTIMATES:
        model, gpu, values = json.loads(key)
        if len(_ESTIMATES) >= 256:
            _ESTIMATES.pop(next(iter(_ESTIMATES)))
        from estimator.validation import ImpossibleConfigurationError

        try:
            est = estimator.estimate(model, values.pop("task"), gpu, extra_models=extra_models, **cal, **values)
        except ImpossibleConfigurationError as exc:  # nothing fits: the page shows the CLI's reason
            if exc.result is None:
                raise
            est = exc.result
        _ESTIMATES[full_key] = (est.model_dump_json(), "" if est.configurations else no_fit_message(est))
    return _ESTIMATES[full_key]
