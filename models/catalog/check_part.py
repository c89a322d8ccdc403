"""Validate one architecture part file: schema + derived parameter count within 5% of the stated total.

Usage: .venv/bin/python models/catalog/check_part.py models/catalog/architectures.toml
"""
import sys
import tomllib

from estimator.catalog import ArchitectureSpec
from estimator.physics_params import active_params_billions_derived, param_breakdown

path = sys.argv[1]
models = tomllib.load(open(path, "rb"))["models"]
bad = 0
for key, raw in models.items():
    try:
        arch = ArchitectureSpec.model_validate(raw)
    except Exception as exc:
        print(f"INVALID {key}: {exc}")
        bad += 1
        continue
    if arch.kind == "diffusion":
        print(f"ok   {key:60s} diffusion denoiser {arch.denoiser_params_billions}B")
        continue
    total = param_breakdown(arch).total_billions
    active = active_params_billions_derived(arch)
    err = total / arch.total_params_billions - 1
    aerr = active / arch.active_params_billions - 1
    flag = "ok  " if abs(err) <= 0.05 else "FAIL"
    bad += flag == "FAIL"
    print(f"{flag} {key:60s} derived total {total:8.2f}B vs stated {arch.total_params_billions:8.2f}B ({err:+.1%});"
          f" active {active:7.2f}B vs {arch.active_params_billions:7.2f}B ({aerr:+.1%})")
if len(sys.argv) > 2:
    aliases = tomllib.load(open(sys.argv[2], "rb"))["model"]
    for alias, target in aliases.items():
        if alias != alias.lower() or target not in models:
            print(f"BAD ALIAS {alias} -> {target}")
            bad += 1
print("FAILURES:", bad)
