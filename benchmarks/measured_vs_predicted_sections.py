"""Two sections of ``benchmarks/measured-vs-predicted.md`` (split from ``benchmarks/measured_vs_predicted.py``,
which calls them): continuous batching against ML.ENERGY's vLLM, and the project's DiT and UNet runs against the
predictor."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _fmt(value: float, pattern: str) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else pattern.format(value)



def diffusion_section(result: dict) -> list[str]:
    """The DiT and UNet runs: measured J/image, latency and power against the predictor (as xDiT; before
    retraining)."""
    runs = result["diffusion"]
    if runs.empty:
        return []
    out = ["## Diffusion: the DiT and UNet runs (before retraining; predicted as xDiT, the published engine)", "",
           "The `torch-dit` and `torch-unet` backends run the denoiser only (random weights; no text encoders, no VAE "
           "decode), so a "
           "few percent of the pipeline's energy is missing from the measurement by construction.", "",
           "| model | GPU | batch | steps | measured J/image | before J/image (APE) | committed J/image (APE) | "
           "measured latency s | before latency s | measured W | before W |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    before, committed = result["diffusion_preds"]["before"], result["diffusion_preds"]["committed"]
    for i, row in runs.iterrows():
        m = float(row["energy_per_image_joules"])
        b = float(before.loc[i, "energy_per_item_joules"])
        c = float(committed.loc[i, "energy_per_item_joules"])
        out.append(f"| {row['model_id']} | {row['gpu_model']} | {int(row['batch_size'])} | "
                   f"{int(row['inference_steps'])} | {m:.0f} | {b:.0f} ({abs(b - m) / m * 100:.0f}%) | "
                   f"{c:.0f} ({abs(c - m) / m * 100:.0f}%) | "
                   f"{row['batch_latency_s']:.2f} | {before.loc[i, 'batch_latency_s']:.2f} | "
                   f"{row['avg_power_watts']:.0f} | {before.loc[i, 'avg_power_watts']:.0f} |")
    return out


def continuous_vs_vllm(everything: pd.DataFrame) -> list[str]:
    """Continuous-batching Llama-8B J/token on H200 against ML.ENERGY's vLLM H100 figure carried to H200 by the
    H200/H100 ratio of this project's own static-batch runs at the same batch."""
    model = "meta-llama/Llama-3.1-8B-Instruct"
    llm = everything[everything["model_id"].eq(model) & everything["task"].eq("lm-arena-chat")]

    def jpt(source: str, gpu: str, batch: int) -> float:
        rows = llm[llm["source"].eq(source) & llm["gpu_model"].eq(gpu) & llm["max_num_seqs"].eq(batch)]
        return float(rows["energy_per_token_joules"].mean()) if len(rows) else float("nan")

    out = ["## Continuous batching vs ML.ENERGY vLLM (Llama-3.1-8B, lm-arena-chat)", "",
           "vLLM's published runs are H100; the continuous-batching runs are H200. The H200/H100 ratio comes from "
           "this project's static-batch runs of the same shape and task on both GPUs "
           "(`h200-llama31-8b.jsonl` / `h100-llama31-8b.jsonl`, same batch); vLLM's H100 J/token times that ratio "
           "is the H200 figure vLLM would be expected to reach.", "",
           "| batch | vLLM H100 J/tok | static H200/H100 | vLLM carried to H200 | continuous H200 J/tok | "
           "continuous / carried vLLM |", "|---|---|---|---|---|---|"]
    for batch in (32, 64, 128, 256):
        vllm = jpt("mlenergy-v3", "H100-SXM", batch)
        ratio = jpt("local:h200-llama31-8b.jsonl", "H200", batch) / jpt("local:h100-llama31-8b.jsonl", "H100-SXM",
                                                                          batch)
        cb = jpt("local:h200-llama31-8b-continuous.jsonl", "H200", batch)
        out.append(f"| {batch} | {_fmt(vllm, '{:.4f}')} | {_fmt(ratio, '{:.3f}')} | {_fmt(vllm * ratio, '{:.4f}')} "
                   f"| {_fmt(cb, '{:.4f}')} | {_fmt(cb / (vllm * ratio), '{:.2f}')} |")
    return out
