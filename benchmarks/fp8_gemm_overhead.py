"""Decode-size GEMMs on a Hopper GPU: BF16 against FP8 with per-row and with 128 x 128 block scales.

``estimator/physics/serving.py`` charges FP8 checkpoints with 128 x 128 block scales a fixed 40 us per layer and
decode step (``BLOCK_FP8_OVERHEAD_PER_LAYER_S``): an activation-quantization kernel before each of a layer's four
GEMM groups, and block-scaled GEMMs below the bandwidth roofline at small batch. That constant was set from public
kernel timings and ML.ENERGY's matched FP8/BF16 pairs. This script measures the same pieces with PyTorch's own
kernels (cuBLAS/CUTLASS through ``torch._scaled_mm``; not vLLM's Triton and CUTLASS kernels, so it bounds the
mechanism rather than reproducing vLLM's numbers) on the four GEMM groups of one Qwen3-32B layer (hidden 5120, 64 x
128 query heads, 8 KV heads, MLP 25600; ``models/catalog/architectures.toml``), at decode batch sizes (16, 32
and 128 tokens):

- ``bf16``: ``torch.mm`` on bfloat16 weights;
- ``fp8 rowwise``: FP8 weights with one scale per output channel, activations pre-quantized per token;
- ``fp8 block``: FP8 weights with 128 x 128 block scales, activations pre-quantized per token and 128-wide group;
- ``quant per token`` / ``quant per group``: the activation quantization alone (eager PyTorch ops, so several
  kernels where vLLM fuses one: an upper bound on that kernel's time).

Each op is captured 50 times in a CUDA graph and the graph replayed; the time per op is the replay time / 50.

Run on a machine with an H100/H200 (nothing is changed on the GPU: no clocks, no power limit):
``python benchmarks/fp8_gemm_overhead.py --out DIR`` writes ``DIR/fp8_gemm_overhead.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

#: (name, output features N, input features K) of one Qwen3-32B layer's GEMM groups
LAYER = (("qkv", 64 * 128 + 2 * 8 * 128, 5120), ("attention out", 5120, 64 * 128),
         ("gate+up", 2 * 25600, 5120), ("down", 5120, 25600))
BATCHES = (16, 32, 128)  # torch._scaled_mm needs the token count to be a multiple of 16
FP8_MAX = 448.0  # largest finite float8_e4m3fn
REPS, REPLAYS = 50, 20


def _time_us(torch, fn) -> float:
    """Microseconds per call of ``fn`` (CUDA-graph replay of REPS calls, median of REPLAYS)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(REPS):
            fn()
    times = []
    for _ in range(REPLAYS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / REPS)
    return sorted(times)[len(times) // 2]


def _quant_per_token(torch, x):
    scale = x.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12) / FP8_MAX
    return (x / scale).to(torch.float8_e4m3fn), scale


def _quant_per_group(torch, x, group: int = 128):
    m, k = x.shape
    grouped = x.view(m, k // group, group)
    scale = grouped.abs().amax(dim=2, keepdim=True).float().clamp(min=1e-12) / FP8_MAX
    return (grouped / scale).to(torch.float8_e4m3fn).view(m, k), scale.view(m, k // group)


def _block_weight(torch, w, block: int = 128):
    n, k = w.shape
    tiles = w.view(n // block, block, k // block, block)
    scale = tiles.abs().amax(dim=(1, 3), keepdim=True).float().clamp(min=1e-12) / FP8_MAX
    return (tiles / scale).to(torch.float8_e4m3fn).view(n, k), scale.view(n // block, k // block)


def _block_mm(torch, xq, x_scale, wq, w_scale):
    """torch._scaled_mm with 1 x 128 activation and 128 x 128 weight scales; the scale layouts PyTorch accepts
    differ by version, so the outer-dim-major layout is tried first."""
    attempts = ((x_scale.t().contiguous().t(), w_scale.t()), (x_scale, w_scale.t().contiguous()))
    last = None
    for sa, sb in attempts:
        try:
            return torch._scaled_mm(xq, wq.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16), (sa, sb)
        except (RuntimeError, ValueError) as exc:
            last = exc
    raise RuntimeError(f"block-scaled _scaled_mm not available: {last}")


def _measure_gemm(torch, m: int, name: str, n: int, k: int, notes: list[str]) -> dict:
    """Microseconds of every variant for one GEMM group at ``m`` tokens."""
    device = torch.device("cuda")
    w = torch.randn(n, k, device=device, dtype=torch.bfloat16) / k ** 0.5
    x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
    row = {"batch": m, "gemm": name, "n": n, "k": k}
    row["bf16"] = _time_us(torch, lambda: torch.mm(x, w.t()))
    w_scale = (w.abs().amax(dim=1, keepdim=True).float() / FP8_MAX).clamp(min=1e-12)
    wq = (w / w_scale).to(torch.float8_e4m3fn)
    xq, x_scale = _quant_per_token(torch, x)
    w_scale_row = w_scale.t().contiguous()
    row["fp8 rowwise"] = _time_us(torch, lambda: torch._scaled_mm(
        xq, wq.t(), scale_a=x_scale, scale_b=w_scale_row, out_dtype=torch.bfloat16))
    xg, xg_scale = _quant_per_group(torch, x)
    wq_block, w_block_scale = _block_weight(torch, w)
    try:
        _, (sa, sb) = _block_mm(torch, xg, xg_scale, wq_block, w_block_scale)
        row["fp8 block"] = _time_us(torch, lambda: torch._scaled_mm(
            xg, wq_block.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16))
    except RuntimeError as exc:
        row["fp8 block"] = None
        notes.append(f"{name}: {str(exc).splitlines()[0][:200]}")
    row["quant per token"] = _time_us(torch, lambda: _quant_per_token(torch, x))
    row["quant per group"] = _time_us(torch, lambda: _quant_per_group(torch, x))
    return row


def measure(torch) -> dict:
    """Microseconds per GEMM group and variant, per batch."""
    torch.manual_seed(0)
    notes: list[str] = []
    rows = [_measure_gemm(torch, m, name, n, k, notes) for m in BATCHES for name, n, k in LAYER]
    return {"rows": rows, "notes": sorted(set(notes))}


def markdown(result: dict) -> str:
    variants = ("bf16", "fp8 rowwise", "fp8 block", "quant per token", "quant per group")
    cell = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    lines = ["# Decode-size GEMMs: BF16 against FP8 per-row and 128 x 128 block scales", "",
             f"Measured by `benchmarks/fp8_gemm_overhead.py` on {result['device']} (torch {result['torch']}, "
             f"CUDA {result['cuda']}). Microseconds per call, CUDA-graph replay, median of {REPLAYS} replays of "
             f"{REPS} calls. One Qwen3-32B layer's four GEMM groups; random weights.", "",
             "| batch | GEMM | N x K | " + " | ".join(variants) + " |", "|---|---|---|" + "---|" * len(variants)]
    for row in result["rows"]:
        lines.append(f"| {row['batch']} | {row['gemm']} | {row['n']} x {row['k']} | "
                     + " | ".join(cell(row[v]) for v in variants) + " |")
    lines += ["", "Per layer (sum of the four groups), microseconds:", "",
              "| batch | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for m in BATCHES:
        group = [r for r in result["rows"] if r["batch"] == m]
        sums = [None if any(r[v] is None for r in group) else sum(r[v] for r in group) for v in variants]
        lines.append(f"| {m} | " + " | ".join(cell(s) for s in sums) + " |")
    if result["notes"]:
        lines += ["", "Not measured: " + "; ".join(result["notes"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for fp8_gemm_overhead.json and .md")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU (an H100 or H200: FP8 tensor cores)")
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
              "python": platform.python_version(), **measure(torch)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fp8_gemm_overhead.json").write_text(json.dumps(result, indent=1))
    text = markdown(result)
    (args.out / "fp8_gemm_overhead.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
