"""Cost and carbon arithmetic: catalog validity, the load model, and hand-checked totals with intervals."""

from __future__ import annotations

import math

import pytest

from estimator.catalog.facility import FacilityCatalogError, load_datacenter_defaults, load_grid_catalog
from estimator.schema import Metric
from estimator.serve import costs


def test_grid_catalog_entries_have_sources_years_and_aliases():
    """Every carbon value must be citable (source and year) and reachable by its usual names."""
    grid = load_grid_catalog()
    assert len(grid.regions) >= 30
    for key, region in grid.regions.items():
        assert region.sources and 2020 <= region.year <= 2025, key
    assert grid.resolve("germany") == "DE" and grid.resolve("DEU") == "DE" and grid.resolve("usa") == "US"
    assert grid.region("FR").gco2_per_kwh < grid.region("PL").gco2_per_kwh


def test_unknown_region_lists_close_matches():
    """A typo must fail with a suggestion, never fall back to some other grid silently."""
    with pytest.raises(FacilityCatalogError, match="germany"):
        load_grid_catalog().resolve("germny")


def test_datacenter_defaults_are_sourced():
    """PUE, host and idle defaults are used in every plan; each must carry its sources."""
    defaults = load_datacenter_defaults()
    assert defaults.pue.default == 1.0
    assert defaults.pue.typical["industry-average-2023"].value == pytest.approx(1.58)
    assert defaults.host.sources and defaults.idle.sources and 0 < defaults.idle.fraction_of_tdp < 0.5


def test_replica_power_is_linear_between_idle_and_busy():
    """Idle and partly loaded replicas are counted at their power, not at saturation (the issue's point)."""
    assert costs.replica_gpu_power_watts(1000, 200, 0.0) == 200
    assert costs.replica_gpu_power_watts(1000, 200, 0.5) == 600
    assert costs.replica_gpu_power_watts(1000, 200, 2.0) == 1000


def _fleet(**inputs):
    return costs.fleet_costs(replicas=3, gpus_per_replica=2,
                             busy_watts_per_replica=Metric(value=1800, p10=1500, p90=2100),
                             capacity_per_replica=Metric(value=12000, p10=10000, p90=14000), peak_demand=30000,
                             units_per_response=600, gpu_tdp_watts=1000, inputs=costs.CostInputs(**inputs))


def test_fleet_costs_by_hand():
    """A hand calculation: 3 replicas at 50% load, idle 0.17 x TDP per GPU, 350 W host per GPU, PUE 1.3."""
    result = _fleet(electricity_usd_per_kwh=0.1, grid_gco2_per_kwh=400, pue=1.3, gpu_usd_per_hour=3,
                    average_load=0.6, host_watts_per_gpu=350)
    idle_replica = 2 * 0.17 * 1000
    gpu_watts = 3 * (idle_replica + 0.5 * (1800 - idle_replica))
    facility = (gpu_watts + 6 * 350) * 1.3
    kwh_day = facility * 24 / 1e3
    assert result.energy_per_day_kwh.value == pytest.approx(kwh_day)
    assert result.electricity_usd_per_day.value == pytest.approx(kwh_day * 0.1)
    assert result.carbon_kg_per_day.value == pytest.approx(kwh_day * 0.4)
    assert result.gpu_usd_per_day == pytest.approx(6 * 24 * 3)
    tokens_day = 18000 * 86400
    assert result.usd_per_million_tokens.value == pytest.approx((kwh_day * 0.1 + 432) / tokens_day * 1e6)
    assert result.energy_per_response_joules.value == pytest.approx(kwh_day * 3.6e6 / (tokens_day / 600))
    assert result.energy_per_day_kwh.p10 < result.energy_per_day_kwh.value < result.energy_per_day_kwh.p90
    assert result.energy_per_month_kwh.value == pytest.approx(kwh_day * 30.4375)


def test_lower_load_costs_less_per_day_but_more_per_response():
    """Idle power makes a half-empty fleet cheaper per day yet dearer per response than a full one."""
    full, half = _fleet(average_load=1.0), _fleet(average_load=0.5)
    assert half.energy_per_day_kwh.value < full.energy_per_day_kwh.value
    assert half.energy_per_response_joules.value > full.energy_per_response_joules.value


def test_demand_curve_equals_its_mean_when_linear(tmp_path):
    """Below saturation the model is linear in load, so a curve and its average give the same day's energy."""
    path = tmp_path / "curve.csv"
    path.write_text("hour,share_of_peak\n" + "\n".join(f"{h},{0.2 if h < 12 else 0.8}" for h in range(24)))
    curve = costs.read_demand_curve(path)
    assert len(curve) == 24
    assert _fleet(demand_curve=curve).energy_per_day_kwh.value == pytest.approx(
        _fleet(average_load=0.5).energy_per_day_kwh.value)


def test_bad_inputs_are_refused(tmp_path):
    """Both a grid value and a region, or a curve without the column, must fail rather than pick one."""
    with pytest.raises(ValueError, match="not both"):
        costs.CostInputs(grid_gco2_per_kwh=300, grid_region="DE")
    path = tmp_path / "bad.csv"
    path.write_text("hour,load\n0,0.5\n")
    with pytest.raises(ValueError, match="share_of_peak"):
        costs.read_demand_curve(path)
    assert math.isclose(costs.usd_per_million_tokens(10, 1e7), 1.0)
