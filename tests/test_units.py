"""Readable units: the unit follows the size, intervals share the value's unit, and the numbers stay right."""

from __future__ import annotations

import math

import pytest

from estimator import units


@pytest.mark.parametrize(("joules", "expected"), [
    (0.35, "0.350 J"), (2_500, "2.50 kJ"), (1_413_517, "1.41 MJ"), (4e6, "1.11 kWh"), (5.4e9, "1.50 MWh"),
    (7.2e12, "2.00 GWh"),
])
def test_energy_unit_follows_size(joules, expected):
    """The issue's '1,413,517 J' must read as MJ; a day's energy as kWh or MWh, never millions of J."""
    assert units.format_energy(joules) == expected


@pytest.mark.parametrize(("value", "quantity", "expected"), [
    (950, "power", "950 W"), (1_234, "power", "1.23 kW"), (3.2e6, "power", "3.20 MW"),
    (0.04, "duration", "40.0 ms"), (45, "duration", "45.0 s"), (300, "duration", "5.00 min"),
    (28_800, "duration", "8.00 h"), (3e5, "duration", "3.47 days"), (123_456, "co2", "123 kg CO2e"),
])
def test_power_time_and_mass_units(value, quantity, expected):
    """An 8-hour batch latency must read as hours (the issue's Wan-14B case), power as kW, carbon as kg."""
    assert units.format_quantity(value, quantity) == expected


def test_scaled_value_is_exact_in_base_units():
    """The label changes, the quantity does not: parse the printed number back and compare."""
    for joules in (12.3, 4.56e4, 7.89e5, 1.23e8, 4.56e10):
        number, label = units.format_energy(joules, digits=6).split()
        scale = {"J": 1, "kJ": 1e3, "MJ": 1e6, "kWh": 3.6e6, "MWh": 3.6e9, "GWh": 3.6e12}[label]
        assert math.isclose(float(number.replace(",", "")) * scale, joules, rel_tol=1e-5)


def test_interval_uses_the_value_unit():
    """p10 and p90 in another unit than the value would mislead; all three share the central value's unit."""
    assert units.format_interval(1_413_517, 9.5e5, 1.7e6, "energy") == "1.41 MJ (p10-p90 0.950-1.70 MJ)"


def test_usd_and_missing_values():
    """Money reads as dollars; a missing value prints '-' instead of 'nan J'."""
    assert units.format_usd(1234.5) == "$1,234"
    assert units.format_usd(0.01234) == "$0.0123"
    assert units.format_energy(None) == "-"
    assert units.format_energy(float("nan")) == "-"
    assert units.significant(1_413_517) == "1,410,000"
