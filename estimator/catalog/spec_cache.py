"""Memoisation of pure functions of a catalog spec, for per-row prediction at scale.

Catalog specs (:class:`~estimator.catalog.catalog.ArchitectureSpec`, :class:`~estimator.catalog.catalog.GPUSpec`)
are frozen but not hashable (they hold lists), so :func:`by_spec` keys a function's cache on the spec's identity
(``id``) plus the other arguments. Each entry holds its spec, which keeps that id from being reused while the
entry lives; the cache is emptied when it reaches ``maxsize`` entries, so memory stays bounded.

Only for functions whose result depends on nothing but their arguments, called positionally, and whose result is
the same for arguments that compare equal (``8`` and ``8.0``, ``0.0`` and ``-0.0`` share an entry).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def by_spec(maxsize: int = 4096) -> Callable[[F], F]:
    """Decorator: remember ``function(spec, *rest)`` keyed on the identity of ``spec`` and the values of ``rest``.

    Args:
        maxsize: entries kept before the cache is emptied (a few hundred bytes an entry).
    """

    def decorate(function: F) -> F:
        cache: dict[tuple, tuple[Any, Any]] = {}

        @functools.wraps(function)
        def remembered(spec, *rest):
            key = (id(spec), rest)
            hit = cache.get(key)
            if hit is not None and hit[0] is spec:
                return hit[1]
            if len(cache) >= maxsize:
                cache.clear()
            value = function(spec, *rest)
            cache[key] = (spec, value)
            return value

        return remembered  # type: ignore[return-value]

    return decorate
