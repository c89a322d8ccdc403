"""Cost and carbon of a deployment: named steps, each returning one quantity with its unit in its name.

The predictor gives GPU power and capacity at a configuration's operating point (ML.ENERGY's steady state, a
saturated batch). A deployment runs below that most of the day, so this module:

1. :func:`idle_watts_per_gpu` - a loaded but unused GPU's power (catalog share of TDP, measured on H100/H200).
2. :func:`replica_gpu_power_watts` - one replica at load ``u`` (share of its capacity): ``idle + u x (busy - idle)``
   with ``idle = GPUs x idle per GPU``; a linear model between the two measured states, an assumption stated in
   every result.
3. :func:`fleet_gpu_power_watts` - demand spread evenly over the replicas (a load balancer), per period of the load
   profile (``--average-load`` or a daily demand curve); replicas are sized for the peak.
4. :func:`host_power_watts` (CPUs, DRAM, NICs: constant per GPU) and :func:`facility_power_watts` (x PUE).
5. :func:`energy_kwh`, :func:`electricity_usd`, :func:`carbon_kg`, :func:`gpu_rental_usd`,
   :func:`usd_per_million_tokens` - plain unit arithmetic.
6. :func:`fleet_costs` - all of it for one deployment, with p10-p90 intervals, as a :class:`CostCarbon`.

Intervals: the low end takes the predicted power's p10 with the capacity's p90 (less power, lower utilisation); the
high end the power's p90 with the capacity's p10; demand, PUE, host power and prices are taken as given.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from estimator.catalog.facility import load_datacenter_defaults, load_grid_catalog
from estimator.schema import CostCarbon, Metric

HOURS_PER_DAY = 24.0
SECONDS_PER_DAY = 86_400.0
JOULES_PER_KWH = 3.6e6


class CostInputs(BaseModel):
    """What the user states about prices, grid, facility and load (all optional; see each field's default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    electricity_usd_per_kwh: float | None = Field(default=None, ge=0, le=10)
    grid_gco2_per_kwh: float | None = Field(default=None, ge=0, le=2000)
    grid_region: str | None = Field(default=None, description="a key or alias of models/catalog/grid_carbon.toml")
    pue: float = Field(default=1.0, ge=1.0, le=3.0, description="facility power / IT power")
    host_watts_per_gpu: float | None = Field(default=None, ge=0, le=5000,
                                             description="non-GPU server power per GPU, W (None: catalog default)")
    gpu_usd_per_hour: float | None = Field(default=None, ge=0, le=1000, description="rental or amortised, per GPU")
    average_load: float | None = Field(default=None, gt=0, le=1, description="mean demand / peak demand")
    demand_curve: tuple[float, ...] | None = Field(default=None, description="demand / peak, evenly spaced over a day")

    @model_validator(mode="after")
    def _one_of_each(self) -> CostInputs:
        if self.grid_gco2_per_kwh is not None and self.grid_region is not None:
            raise ValueError("give --grid-gco2-per-kwh or --grid-region, not both")
        if self.average_load is not None and self.demand_curve is not None:
            raise ValueError("give --average-load or --demand-curve, not both")
        curve = self.demand_curve
        if curve is not None and (not curve or any(not 0 <= s <= 1 for s in curve) or max(curve) <= 0):
            raise ValueError("a demand curve needs shares of peak in [0, 1], at least one above 0")
        return self

    def load_shares(self) -> tuple[float, ...]:
        """Demand as shares of the peak over one day (default: always at peak, the saturation case)."""
        if self.demand_curve is not None:
            return self.demand_curve
        return (self.average_load if self.average_load is not None else 1.0,)

    def grid_intensity(self) -> tuple[float | None, str]:
        """(gCO2e/kWh, where it came from); (None, '') when neither a value nor a region was given."""
        if self.grid_gco2_per_kwh is not None:
            return self.grid_gco2_per_kwh, "given"
        if self.grid_region is not None:
            region = load_grid_catalog().region(self.grid_region)
            return region.gco2_per_kwh, f"{region.name} {region.year} annual average (models/catalog/grid_carbon.toml)"
        return None, ""

    def host_watts(self) -> float:
        """Host power per GPU in W: as given, else the catalog default (models/catalog/datacenter.toml)."""
        if self.host_watts_per_gpu is not None:
            return self.host_watts_per_gpu
        return load_datacenter_defaults().host.watts_per_gpu


# ------------------------------------------------------------------------------------------------ named steps

def idle_watts_per_gpu(tdp_watts: float) -> float:
    """Power of a GPU holding a model but serving nothing, W: the catalog's share of TDP (measured on H100/H200)."""
    return load_datacenter_defaults().idle.fraction_of_tdp * tdp_watts


def replica_gpu_power_watts(busy_watts: float, idle_watts: float, load_share: float) -> float:
    """GPU power of one replica at ``load_share`` of its capacity (0..1): linear between idle and busy, W."""
    share = min(max(load_share, 0.0), 1.0)
    return idle_watts + share * max(busy_watts - idle_watts, 0.0)


def fleet_gpu_power_watts(replicas: int, busy_watts_per_replica: float, idle_watts_per_replica: float,
                          capacity_per_replica: float, demand: float) -> float:
    """GPU power of ``replicas`` identical replicas sharing ``demand`` evenly (units/s as the capacity), W."""
    load = demand / (replicas * capacity_per_replica) if capacity_per_replica > 0 else 1.0
    return replicas * replica_gpu_power_watts(busy_watts_per_replica, idle_watts_per_replica, load)


def host_power_watts(total_gpus: int, host_watts_per_gpu: float) -> float:
    """Non-GPU server power of the fleet, W (constant: hosts do not idle to zero)."""
    return total_gpus * host_watts_per_gpu


def facility_power_watts(it_power_watts: float, pue: float) -> float:
    """Facility power = IT power x PUE, W."""
    return it_power_watts * pue


def energy_kwh(power_watts: float, hours: float) -> float:
    """Energy of a constant ``power_watts`` over ``hours``, kWh."""
    return power_watts * hours / 1e3


def electricity_usd(kwh: float, usd_per_kwh: float) -> float:
    return kwh * usd_per_kwh


def carbon_kg(kwh: float, gco2_per_kwh: float) -> float:
    return kwh * gco2_per_kwh / 1e3


def gpu_rental_usd(total_gpus: int, hours: float, usd_per_gpu_hour: float) -> float:
    return total_gpus * hours * usd_per_gpu_hour


def usd_per_million_tokens(usd_per_day: float, tokens_per_day: float) -> float:
    return usd_per_day / tokens_per_day * 1e6 if tokens_per_day > 0 else math.inf


def read_demand_curve(path: Path | str) -> tuple[float, ...]:
    """A daily demand curve from a CSV with a ``share_of_peak`` column (0..1; rows evenly spaced over a day,
    e.g. 24 hourly rows; other columns such as ``hour`` are ignored).

    Raises:
        ValueError: no such column, a non-number, or a value outside [0, 1].
    """
    path = Path(path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = [f.strip() for f in reader.fieldnames or []]
        if "share_of_peak" not in fields:
            raise ValueError(f"{path}: needs a share_of_peak column (demand / peak demand, 0..1); has "
                             f"{', '.join(fields) or 'no header'}")
        shares = []
        for number, row in enumerate(reader, start=2):
            raw = {k.strip(): v for k, v in row.items() if k}.get("share_of_peak", "")
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{path}:{number}: share_of_peak {raw!r} is not a number") from None
            if not 0 <= value <= 1:
                raise ValueError(f"{path}:{number}: share_of_peak {value:g} is outside [0, 1]")
            shares.append(value)
    if not shares or max(shares) <= 0:
        raise ValueError(f"{path}: no positive share_of_peak rows")
    return tuple(shares)


# ------------------------------------------------------------------------------------------------ one deployment

def _metric(low: float, value: float, high: float) -> Metric:
    return Metric(value=value, p10=min(low, value, high), p90=max(low, value, high))


def _scaled(metric: Metric, factor: float) -> Metric:
    return Metric(value=metric.value * factor, p10=metric.p10 * factor, p90=metric.p90 * factor)


def fleet_costs(*, replicas: int, gpus_per_replica: int, busy_watts_per_replica: Metric,
                capacity_per_replica: Metric, peak_demand: float, units_per_response: float, gpu_tdp_watts: float,
                inputs: CostInputs, tokens: bool = True) -> CostCarbon:
    """Energy, cost and carbon of ``replicas`` x ``gpus_per_replica`` GPUs serving ``peak_demand`` at its profile.

    Args:
        replicas: identical replicas, sized for the peak.
        gpus_per_replica: GPUs in each replica.
        busy_watts_per_replica: predicted GPU power of one replica at its operating point, W (with p10/p90).
        capacity_per_replica: predicted throughput of one replica (tokens/s, or items/s), with p10/p90.
        peak_demand: demand at the peak, in the capacity's unit.
        units_per_response: tokens per response (LLM) or 1 (one image or video per request).
        gpu_tdp_watts: the GPU's TDP (for its idle power).
        inputs: prices, grid, PUE, host power and load profile.
        tokens: the capacity is in tokens (then a $ per million tokens figure is given).
    """
    total_gpus = replicas * gpus_per_replica
    idle_gpu = idle_watts_per_gpu(gpu_tdp_watts)
    idle_replica = idle_gpu * gpus_per_replica
    shares = inputs.load_shares()
    sides = {"low": (busy_watts_per_replica.p10, capacity_per_replica.p90),
             "value": (busy_watts_per_replica.value, capacity_per_replica.value),
             "high": (busy_watts_per_replica.p90, capacity_per_replica.p10)}
    gpu_watts = {side: sum(fleet_gpu_power_watts(replicas, busy, idle_replica, capacity, s * peak_demand)
                           for s in shares) / len(shares) for side, (busy, capacity) in sides.items()}
    host_watts = host_power_watts(total_gpus, inputs.host_watts())
    facility = {side: facility_power_watts(w + host_watts, inputs.pue) for side, w in gpu_watts.items()}
    per_day = _metric(*(energy_kwh(facility[s], HOURS_PER_DAY) for s in ("low", "value", "high")))
    days_per_month = load_datacenter_defaults().calendar.days_per_month
    average_share = sum(shares) / len(shares)
    units_per_day = average_share * peak_demand * SECONDS_PER_DAY
    responses = units_per_day / units_per_response if units_per_response > 0 else 0.0
    per_response = _scaled(per_day, JOULES_PER_KWH / responses) if responses > 0 else _scaled(per_day, math.inf)
    out = {"average_load_share_of_peak": average_share,
           "gpu_power_kw": _metric(gpu_watts["low"] / 1e3, gpu_watts["value"] / 1e3, gpu_watts["high"] / 1e3),
           "host_power_kw": host_watts / 1e3,
           "facility_power_kw": _metric(facility["low"] / 1e3, facility["value"] / 1e3, facility["high"] / 1e3),
           "energy_per_day_kwh": per_day, "energy_per_month_kwh": _scaled(per_day, days_per_month),
           "energy_per_response_joules": per_response, "responses_per_day": responses, "pue": inputs.pue,
           "host_watts_per_gpu": inputs.host_watts(), "idle_watts_per_gpu": idle_gpu}
    usd_day = None
    if inputs.electricity_usd_per_kwh is not None:
        usd_day = _scaled(per_day, inputs.electricity_usd_per_kwh)
        out.update(electricity_usd_per_day=usd_day, electricity_usd_per_month=_scaled(usd_day, days_per_month),
                   electricity_usd_per_kwh=inputs.electricity_usd_per_kwh)
    if inputs.gpu_usd_per_hour is not None:
        rental = gpu_rental_usd(total_gpus, HOURS_PER_DAY, inputs.gpu_usd_per_hour)
        out["gpu_usd_per_day"] = rental
        base = usd_day or Metric(value=0.0, p10=0.0, p90=0.0)
        usd_day = Metric(value=base.value + rental, p10=base.p10 + rental, p90=base.p90 + rental)
    if usd_day is not None:
        out["total_usd_per_day"] = usd_day
        if tokens and units_per_day > 0:
            out["usd_per_million_tokens"] = _scaled(usd_day, 1e6 / units_per_day)
    grid, source = inputs.grid_intensity()
    if grid is not None:
        kg_day = _scaled(per_day, grid / 1e3)
        out.update(carbon_kg_per_day=kg_day, carbon_kg_per_month=_scaled(kg_day, days_per_month),
                   carbon_g_per_response=_scaled(per_response, grid / JOULES_PER_KWH), grid_gco2_per_kwh=grid,
                   grid_source=source)
    out["assumptions"] = _assumptions(inputs, shares, idle_gpu, days_per_month)
    return CostCarbon(**out)


def _assumptions(inputs: CostInputs, shares: Sequence[float], idle_gpu: float, days_per_month: float) -> list[str]:
    profile = (f"a daily demand curve of {len(shares)} periods (mean {sum(shares) / len(shares):.0%} of peak)"
               if inputs.demand_curve is not None else f"demand at {shares[0]:.0%} of peak all day")
    return [f"load: {profile}, spread evenly over replicas sized for the peak; a replica at load u draws idle + u x "
            f"(predicted busy power - idle), idle {idle_gpu:.0f} W per GPU (models/catalog/datacenter.toml)",
            f"host (CPU, DRAM, NIC) {inputs.host_watts():.0f} W per GPU beside the GPUs, then x PUE {inputs.pue:g}",
            f"a month is {days_per_month:g} days; intervals take the predicted power and capacity at their p10/p90 "
            f"ends; prices, grid intensity and PUE as given"]
