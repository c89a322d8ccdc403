"""Readable units for people: a quantity in its base unit (J, W, s, g CO2e, USD) printed in the unit its size calls for.

Computation stays in base units with the unit in the name (``energy_per_request_joules``); only printing goes
through here. An interval is printed in the unit of its central value, so the three numbers compare at a glance:
``format_interval(1_413_517, 1.2e6, 1.7e6, "energy")`` -> ``'1.41 MJ (p10-p90 1.20-1.70 MJ)'``.

Energy: J, kJ, MJ below 1 kWh (per token, per response, per image); kWh, MWh, GWh from 1 kWh up (per day, per
month), since that is how electricity is billed. ``energy_unit="Wh"`` forces the Wh family.
"""

from __future__ import annotations

import math

JOULES_PER_WH = 3600.0
JOULES_PER_KWH = 3.6e6

#: quantity -> ascending (threshold in base unit, scale in base units per displayed unit, unit label)
_LADDERS: dict[str, tuple[tuple[float, float, str], ...]] = {
    "energy": ((0.0, 1.0, "J"), (1e3, 1e3, "kJ"), (1e6, 1e6, "MJ"), (JOULES_PER_KWH, JOULES_PER_KWH, "kWh"),
               (1e3 * JOULES_PER_KWH, 1e3 * JOULES_PER_KWH, "MWh"), (1e6 * JOULES_PER_KWH, 1e6 * JOULES_PER_KWH,
                                                                     "GWh")),
    "energy_wh": ((0.0, JOULES_PER_WH, "Wh"), (JOULES_PER_KWH, JOULES_PER_KWH, "kWh"),
                  (1e3 * JOULES_PER_KWH, 1e3 * JOULES_PER_KWH, "MWh"),
                  (1e6 * JOULES_PER_KWH, 1e6 * JOULES_PER_KWH, "GWh")),
    "power": ((0.0, 1.0, "W"), (1e3, 1e3, "kW"), (1e6, 1e6, "MW")),
    "duration": ((0.0, 1e-3, "ms"), (1.0, 1.0, "s"), (120.0, 60.0, "min"), (7200.0, 3600.0, "h"),
                 (172800.0, 86400.0, "days")),
    "co2": ((0.0, 1.0, "g CO2e"), (1e3, 1e3, "kg CO2e"), (1e6, 1e6, "t CO2e")),
}


def choose_unit(value: float, quantity: str) -> tuple[float, str]:
    """(scale, label) for ``value`` in base units: the largest unit whose threshold ``|value|`` reaches.

    Args:
        value: the quantity in its base unit (J, W, s or g CO2e).
        quantity: 'energy', 'energy_wh', 'power', 'duration' or 'co2'.

    Raises:
        KeyError: an unknown quantity.
    """
    ladder = _LADDERS[quantity]
    magnitude = abs(value) if math.isfinite(value) else 0.0
    scale, label = ladder[0][1], ladder[0][2]
    for threshold, step_scale, step_label in ladder:
        if magnitude >= threshold:
            scale, label = step_scale, step_label
    return scale, label


def significant(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant figures, thousands separated, no exponent: 1413517 -> '1,410,000'."""
    if value is None or not math.isfinite(value):
        return "-"
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)))
    decimals = max(digits - 1 - exponent, 0)
    rounded = value if decimals else round(value, digits - 1 - exponent)  # ndigits < 0 rounds to tens, hundreds...
    return f"{rounded:,.{decimals}f}"


def format_quantity(value: float | None, quantity: str, *, digits: int = 3) -> str:
    """``value`` (base unit) with the unit its size calls for: ``format_quantity(5.4e9, 'energy')`` -> '1.50 MWh'."""
    if value is None or not math.isfinite(value):
        return "-"
    scale, label = choose_unit(value, quantity)
    return f"{significant(value / scale, digits)} {label}"


def format_energy(joules: float | None, *, digits: int = 3) -> str:
    """Energy in J, kJ or MJ below 1 kWh, else kWh, MWh or GWh."""
    return format_quantity(joules, "energy", digits=digits)


def format_power(watts: float | None, *, digits: int = 3) -> str:
    """Power in W, kW or MW."""
    return format_quantity(watts, "power", digits=digits)


def format_duration(seconds: float | None, *, digits: int = 3) -> str:
    """Time in ms, s (below 2 min), min (below 2 h), h (below 2 days) or days."""
    return format_quantity(seconds, "duration", digits=digits)


def format_co2(grams: float | None, *, digits: int = 3) -> str:
    """CO2-equivalent mass in g, kg or t."""
    return format_quantity(grams, "co2", digits=digits)


def format_usd(dollars: float | None, *, digits: int = 3) -> str:
    """US dollars: '$1,234' from $1,000 up, else 3 significant figures ('$0.0123')."""
    if dollars is None or not math.isfinite(dollars):
        return "-"
    if abs(dollars) >= 1000:
        return f"${dollars:,.0f}"
    return f"${significant(dollars, digits)}"


def format_interval(value: float | None, p10: float | None, p90: float | None, quantity: str, *,
                    digits: int = 3) -> str:
    """'value unit (p10-p90 low-high unit)', all three in the unit chosen for ``value``."""
    if value is None or not math.isfinite(value):
        return "-"
    scale, label = choose_unit(value, quantity)
    low = "-" if p10 is None else significant(p10 / scale, digits)
    high = "-" if p90 is None else significant(p90 / scale, digits)
    return f"{significant(value / scale, digits)} {label} (p10-p90 {low}-{high} {label})"
