"""Reproduce findings of "Where Do the Joules Go?" (arXiv 2601.22076, section 3) with the trained predictors
and what-if.

Run: ``.venv/bin/python benchmarks/diagnosis.py`` -> writes ``benchmarks/diagnosis.md``.

For each finding: the paper's number, the measured value recomputed from ``datasets/`` where it is a data
aggregate, the prediction (configurations as a user would give them), and whether the attribution names the
driver the paper names. The driver check is done on *channels*: every attribution item goes to its latent
factor (``feature_table``'s ``factor``); a physics prior is split exactly (Shapley) over the features it reads,
each going to that feature's factor. The paper's driver is "named" when its channels carry the largest share of
the change, in the direction of the change. Caveat that matters: the predictor was trained on most of these
runs, so numeric agreement on trained models is in-sample; models absent from ``card.domain`` are flagged.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.catalog.catalog import load_catalog
from estimator.explain.attribution import explain_change
from estimator.explain.model import ChangeAttribution
from estimator.learn.data import load_runs
from estimator.learn.family import feature_table
from estimator.learn.training import split_by_family
from estimator.serve.api import load_predictor, predict_frame

OUT = Path(__file__).with_name("diagnosis.md")
B200, H100 = "B200", "H100-SXM"
QWEN32, QWEN30T = "Qwen/Qwen3-32B", "Qwen/Qwen3-30B-A3B-Thinking-2507"
LLM_KEYS = ("model_id", "task", "gpu_model", "num_gpus", "max_num_seqs", "weight_precision", "tensor_parallel",
            "expert_parallel", "data_parallel", "avg_output_len")
DIFFUSION_KEYS = ("model_id", "task", "gpu_model", "num_gpus", "batch_size", "ulysses_degree", "ring_degree",
                  "inference_steps", "image_height", "image_width", "video_height", "video_width", "num_frames")


class Context:
    """Predictor, catalog and the measured runs, loaded once."""

    def __init__(self):
        self.predictor = load_predictor()
        self.catalog = load_catalog()
        frames = split_by_family(load_runs(catalog=self.catalog))
        self.llm, self.diffusion = frames["llm"], frames["diffusion"]
        self.trained = set(self.predictor.card.domain["llm"].models) | set(
            self.predictor.card.domain["diffusion"].models)

    def predict(self, rows: list[dict]) -> pd.DataFrame:
        return predict_frame(pd.DataFrame(rows), predictor=self.predictor, catalog=self.catalog)

    def change(self, base: dict, changed: dict, quantity: str | None = None) -> ChangeAttribution:
        return explain_change(base, changed, predictor=self.predictor, catalog=self.catalog, quantity=quantity)

    def predict_runs(self, frame: pd.DataFrame, family: str) -> pd.DataFrame:
        """Predictions for measured rows (their own configuration columns; blanks -> defaults)."""
        keys = [k for k in (DIFFUSION_KEYS if family == "diffusion" else LLM_KEYS) if k in frame.columns]
        return self.predict(frame[keys].to_dict("records"))


def channels(change: ChangeAttribution) -> dict[str, float]:
    """Delta log per latent factor; physics priors split over their inputs' factors (exact Shapley shares)."""
    factor_of = {f.name: f.factor for f in feature_table(change.base.family)}
    out: dict[str, float] = {}
    for delta in change.deltas:
        if delta.kind == "physics" and delta.top_features:
            for feature in delta.top_features:
                factor = factor_of.get(feature.name, delta.factor)
                out[factor] = out.get(factor, 0.0) + feature.delta_log
        else:
            out[delta.factor] = out.get(delta.factor, 0.0) + delta.delta_log
    return dict(sorted(out.items(), key=lambda kv: -abs(kv[1])))


def driver_check(change: ChangeAttribution, expected: tuple[str, ...]) -> tuple[bool, str]:
    """Named when the channel pushing hardest in the direction of the change is one the paper names.

    Offsetting channels are allowed (e.g. an idealised roofline speed-up against the static power of more GPUs):
    the paper explains why a number moves, so the check asks what moves it that way.
    """
    ch = channels(change)
    top = ", ".join(f"{k} x{math.exp(v):.2f}" for k, v in list(ch.items())[:3])
    direction = np.sign(change.log_ratio)
    pushing = {k: v for k, v in ch.items() if np.sign(v) == direction}
    if not pushing:
        return False, top
    return max(pushing, key=lambda k: abs(pushing[k])) in expected, top


def verdict(predicted: float, paper: float, tolerance: float = 1.25) -> str:
    """'match' within x1.25 of the paper, 'direction' when on the same side of 1 (ratios), else 'miss'."""
    if abs(math.log(predicted / paper)) <= math.log(tolerance):
        return "match"
    if (predicted - 1) * (paper - 1) > 0:
        return "direction only"
    return "miss"


def _e(frame: pd.DataFrame, column: str = "energy_per_token_joules") -> float:
    if (frame["status"] != "ok").any():
        raise RuntimeError("; ".join(frame["reason"]))
    return float(frame[column].iloc[0])


# --------------------------------------------------------------------------------------------------- findings
def reasoning_vs_chat(ctx: Context) -> list[dict]:
    """#7-#9 (#3): Qwen 3 32B, 1xB200: reasoning (GPQA @128) vs chat (@512)."""
    chat = {"model_id": QWEN32, "task": "lm-arena-chat", "gpu_model": B200, "num_gpus": 1, "max_num_seqs": 512,
            "avg_output_len": 627}
    gpqa = {"task": "gpqa", "max_num_seqs": 128, "avg_output_len": 7035}
    rows = []
    per_response = ctx.change(chat, gpqa, quantity="energy_per_request_joules")
    named, top = driver_check(per_response, ("workload",))
    rows.append(dict(finding="#9 (#3) energy/response, GPQA@128 vs chat@512, Qwen3-32B 1xB200",
                     paper="95 -> 2,192 J (x23)",
                     predicted=f"{per_response.base.prediction:.0f} -> {per_response.changed.prediction:,.0f} J "
                               f"(x{per_response.ratio:.1f})",
                     number=verdict(per_response.ratio, 2192 / 95), driver="output length (workload) x KV-cache "
                     "capped batch", named=named, channels=top, change=per_response))
    per_token = ctx.change(chat, gpqa)
    named, top = driver_check(per_token, ("batch", "memory"))
    rows.append(dict(finding="#8 energy/token at each task's max batch (same pair)", paper="0.151 -> 0.312 (x2.1)",
                     predicted=f"{per_token.base.prediction:.3f} -> {per_token.changed.prediction:.3f} "
                               f"(x{per_token.ratio:.2f})", number=verdict(per_token.ratio, 0.312 / 0.151),
                     driver="KV cache caps the batch (batch/memory)", named=named, channels=top, change=per_token))
    same_batch = ctx.change({**chat, "max_num_seqs": 128}, {"task": "gpqa", "avg_output_len": 7035})
    named, top = driver_check(same_batch, ("workload", "compute"))
    rows.append(dict(finding="#7 energy/token at the same batch 128", paper="0.209 -> 0.312 (x1.5)",
                     predicted=f"{same_batch.base.prediction:.3f} -> {same_batch.changed.prediction:.3f} "
                               f"(x{same_batch.ratio:.2f})", number=verdict(same_batch.ratio, 0.312 / 0.209),
                     driver="longer context: more attention/KV reads per token (workload/compute)", named=named,
                     channels=top, change=same_batch))
    return rows


def batch_sweep(ctx: Context) -> list[dict]:
    """#10/#11/#53: energy per token falls with batch then flattens."""
    base = {"model_id": QWEN32, "task": "lm-arena-chat", "gpu_model": B200, "num_gpus": 1}
    paper = {8: 1.545, 64: 0.313, 128: 0.209, 256: 0.151, 384: 0.141, 512: 0.151}
    pred = ctx.predict([{**base, "max_num_seqs": b} for b in paper])
    values = dict(zip(paper, pred["energy_per_token_joules"], strict=True))
    best = min(values, key=values.get)
    change = ctx.change({**base, "max_num_seqs": 8}, {"max_num_seqs": 384})
    named, top = driver_check(change, ("batch",))
    rows = [dict(finding="#11 Qwen3-32B chat 1xB200, E/token at bs 8/64/128/256/384/512",
                 paper=" / ".join(f"{v:.3f}" for v in paper.values()) + " (min at 384, x11 from bs8)",
                 predicted=" / ".join(f"{v:.3f}" for v in values.values())
                 + f" (min at {best}, x{values[8] / values[best]:.1f} from bs8)",
                 number=verdict(values[8] / values[best], 1.545 / 0.141), driver="batch size -> utilization",
                 named=named, channels=top, change=change)]
    flat = values[512] / values[256]
    rows.append(dict(finding="#11 flattening: E/token bs512 / bs256", paper="1.00 (0.151 vs 0.151)",
                     predicted=f"{flat:.2f}", number="match" if abs(math.log(flat)) < math.log(1.15) else "miss",
                     driver="utilization saturates", named=None, channels="", change=None))
    # #53 over every measured (model, task, GPU, #GPU) group that has bs 8
    llm = ctx.llm.copy()
    llm["pred"] = ctx.predict_runs(llm, "llm")["energy_per_token_joules"].to_numpy()
    measured, predicted = [], []
    for _, group in llm.groupby(["model_id", "task", "gpu_model", "num_gpus"]):
        if (group["max_num_seqs"] == 8).any() and len(group) >= 3:
            at8 = group[group["max_num_seqs"] == 8]
            if group["pred"].isna().any():
                continue
            measured.append(float(at8["energy_per_token_joules"].iloc[0] / group["energy_per_token_joules"].min()))
            predicted.append(float(at8["pred"].iloc[0] / group["pred"].min()))
    rows.append(dict(finding=f"#53 E/token at bs8 over group minimum, median over {len(measured)} groups "
                             "(in-sample)", paper="x6.4 (p10 2.6, p90 16.8)",
                     predicted=f"x{np.median(predicted):.1f} (p10 {np.percentile(predicted, 10):.1f}, p90 "
                               f"{np.percentile(predicted, 90):.1f}); measured now x{np.median(measured):.1f}",
                     number=verdict(float(np.median(predicted)), 6.4), driver="batch", named=None, channels="",
                     change=None))
    return rows


def moe_vs_dense(ctx: Context) -> list[dict]:
    """#28: Qwen3 30B-A3B Thinking vs Qwen3 32B, GPQA, 1xB200, each at its min-E batch (512 vs 128)."""
    dense = {"model_id": QWEN32, "task": "gpqa", "gpu_model": B200, "num_gpus": 1, "max_num_seqs": 128}
    change = ctx.change(dense, {"model_id": QWEN30T, "max_num_seqs": 512})
    named, top = driver_check(change, ("model", "compute"))
    same = ctx.change(dense, {"model_id": QWEN30T})
    named_same, top_same = driver_check(same, ("model", "compute"))
    return [dict(finding="#28 MoE vs dense, GPQA 1xB200: 32B@128 -> 30B-A3B@512", paper="0.3116 -> 0.0876 (x0.28)",
                 predicted=f"{change.base.prediction:.4f} -> {change.changed.prediction:.4f} (x{change.ratio:.2f})",
                 number=verdict(change.ratio, 0.0876 / 0.3116), driver="active parameters (model/compute)",
                 named=named, channels=top, change=change),
            dict(finding="#28 same, both at batch 128 (what-if)", paper="(no number; active params drive it)",
                 predicted=f"{same.base.prediction:.4f} -> {same.changed.prediction:.4f} (x{same.ratio:.2f})",
                 number="n/a", driver="active parameters (model/compute)", named=named_same, channels=top_same,
                 change=same)]


def _pairs(frame: pd.DataFrame, keys: list[str], vary: str, a, b) -> pd.DataFrame:
    left = frame[frame[vary] == a].set_index(keys)
    right = frame[frame[vary] == b].set_index(keys)
    return pd.merge(left, right, left_index=True, right_index=True, suffixes=("_a", "_b"), how="inner")


def more_gpus(ctx: Context) -> list[dict]:
    """#42/#43: more GPUs at the same batch raise energy per token (measured pairs, adjacent GPU counts)."""
    llm = ctx.llm[ctx.llm["task"].isin(["gpqa", "lm-arena-chat", "sourcegraph-fim"])].copy()
    llm["pred"] = ctx.predict_runs(llm, "llm")["energy_per_token_joules"].to_numpy()
    rows = []
    example = None
    for gpu, paper in ((B200, "37/37 (100%)"), (H100, "39/42 (93%)")):
        sub = llm[llm["gpu_model"] == gpu]
        measured_up = predicted_up = total = 0
        for (_, _, batch), group in sub.groupby(["model_id", "task", "max_num_seqs"]):
            counts = sorted(group["num_gpus"].unique())
            for a, b in zip(counts, counts[1:], strict=False):
                x = group[group["num_gpus"] == a].iloc[0]
                y = group[group["num_gpus"] == b].iloc[0]
                total += 1
                measured_up += y["energy_per_token_joules"] > x["energy_per_token_joules"]
                predicted_up += y["pred"] > x["pred"]
                if example is None and gpu == H100 and batch >= 64 and y["pred"] > x["pred"]:
                    example = {k: x[k] for k in ("model_id", "task", "gpu_model", "num_gpus", "max_num_seqs")}, int(b)
        share = predicted_up / total if total else float("nan")
        rows.append(dict(finding=f"#{42 if gpu == B200 else 43} more GPUs, same batch, {gpu}: energy rises",
                         paper=paper, predicted=f"{predicted_up}/{total} ({share:.0%}); measured now "
                                                f"{measured_up}/{total}",
                         number="match" if total and abs(share - measured_up / total) <= 0.15 else "miss",
                         driver="GPU count (static power of more GPUs, less work each)", named=None, channels="",
                         change=None))
    if example:
        base, count = example
        change = ctx.change({k: (v.item() if hasattr(v, "item") else v) for k, v in base.items()},
                            {"num_gpus": count, "tensor_parallel": None, "expert_parallel": None})
        named, top = driver_check(change, ("gpu_count", "parallelism", "communication", "utilization"))
        rows.append(dict(finding=f"#42/#43 example: {base['model_id']} {base['task']} {base['gpu_model']} "
                                 f"bs{int(base['max_num_seqs'])}, {int(base['num_gpus'])} -> {count} GPUs",
                         paper="energy up", predicted=f"x{change.ratio:.2f}", number=verdict(change.ratio, 1.3),
                         driver="GPU count / parallelism", named=named, channels=top, change=change))
    return rows


def b200_vs_h100(ctx: Context) -> list[dict]:
    """#37 (same batch ~0.98) and #32 (gains from larger feasible batches)."""
    llm = ctx.llm.copy()
    llm["pred"] = ctx.predict_runs(llm, "llm")["energy_per_token_joules"].to_numpy()
    pairs = _pairs(llm, ["model_id", "task", "num_gpus", "max_num_seqs"], "gpu_model", H100, B200)
    measured = pairs["energy_per_token_joules_b"] / pairs["energy_per_token_joules_a"]
    predicted = pairs["pred_b"] / pairs["pred_a"]
    rows = [dict(finding=f"#37 B200/H100 E/token at the same (model, task, #GPU, batch), median of {len(pairs)} "
                         "pairs", paper="0.98 (p10 0.75, p90 1.48)",
                 predicted=f"{predicted.median():.2f} (p10 {predicted.quantile(0.1):.2f}, p90 "
                           f"{predicted.quantile(0.9):.2f}); measured now {measured.median():.2f}",
                 number=verdict(float(predicted.median()), 0.98, 1.1), driver="same batch: little gain",
                 named=None, channels="", change=None)]
    base = {"model_id": "Qwen/Qwen3-235B-A22B-Thinking-2507", "task": "gpqa", "gpu_model": H100, "num_gpus": 8,
            "max_num_seqs": 32}
    change = ctx.change(base, {"gpu_model": B200, "max_num_seqs": 512})
    named, top = driver_check(change, ("batch", "memory"))
    rows.append(dict(finding="#32 Qwen3-235B-A22B Thinking GPQA: 8xH100 bs32 -> 8xB200 bs512",
                     paper="3.609 -> 0.634 (x0.18)",
                     predicted=f"{change.base.prediction:.3f} -> {change.changed.prediction:.3f} (x{change.ratio:.2f})",
                     number=verdict(change.ratio, 0.634 / 3.609), driver="larger feasible batch (memory -> batch)",
                     named=named, channels=top, change=change))
    same = ctx.change({**base, "max_num_seqs": 32}, {"gpu_model": B200})
    named, top = driver_check(same, ("gpu",))
    rows.append(dict(finding="#37 same model, H100 -> B200 at the same bs32 (what-if)", paper="~0.98 typical",
                     predicted=f"x{same.ratio:.2f}", number=verdict(same.ratio, 0.98, 1.1),
                     driver="GPU generation alone", named=named, channels=top, change=same))
    return rows


def fp8(ctx: Context) -> list[dict]:
    """#38/#40: FP8 vs BF16 energy crosses over with batch (Qwen3 235B family)."""
    base = {"model_id": "Qwen/Qwen3-235B-A22B-Instruct-2507", "task": "lm-arena-chat", "gpu_model": H100,
            "num_gpus": 8}
    paper = {16: 6.30 / 5.18, 32: 3.64 / 3.83, 256: 0.950 / 1.093}
    rows = []
    fp8_id = "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8"
    flag = "" if fp8_id in ctx.trained else " (FP8 Instruct not in training data)"
    for batch, ratio in paper.items():
        change = ctx.change({**base, "max_num_seqs": batch}, {"model_id": fp8_id})
        # small batch: the paper blames FP8's low-arithmetic-intensity side operations (precision, utilization);
        # large batch: smaller weights and faster Tensor Cores (memory, compute; the roofline step is 'utilization')
        expected = ("precision", "utilization") if batch <= 16 else ("memory", "compute", "utilization")
        named, top = driver_check(change, expected)
        rows.append(dict(finding=f"#40 Qwen3-235B Instruct chat 8xH100 bs{batch}: FP8/BF16{flag}",
                         paper=f"x{ratio:.2f}", predicted=f"x{change.ratio:.2f}", number=verdict(change.ratio, ratio,
                                                                                                 1.1),
                         driver="FP8 side-op overhead" if batch <= 16 else "smaller weights, faster Tensor Cores",
                         named=named,
                         channels=top, change=change))
    llm = ctx.llm.copy()
    llm["pred"] = ctx.predict_runs(llm, "llm")["energy_per_token_joules"].to_numpy()
    # FP8/BF16 twins of the 235B family, paired by catalog family (one variant per task), never by name
    llm["family_id"] = llm["model_id"].map(lambda m: ctx.catalog.models[m].family)
    family = llm["family_id"].eq("qwen3-235b-a22b")
    bf16 = llm[family & llm["weight_precision"].eq("bfloat16")]
    fp = llm[family & llm["weight_precision"].eq("fp8")]
    keys = ["family_id", "task", "gpu_model", "num_gpus", "max_num_seqs"]
    pairs = pd.merge(bf16.set_index(keys), fp.set_index(keys), left_index=True, right_index=True,
                     suffixes=("_bf16", "_fp8"), how="inner")
    batch = pairs.index.get_level_values("max_num_seqs")
    for label, low, high, paper_median in (("8-16", 8, 16, 1.30), ("17-64", 17, 64, 1.01), ("65-256", 65, 256, 0.89)):
        mask = (batch >= low) & (batch <= high)
        if not mask.any():
            continue
        measured = (pairs["energy_per_token_joules_fp8"] / pairs["energy_per_token_joules_bf16"])[mask]
        predicted = (pairs["pred_fp8"] / pairs["pred_bf16"])[mask]
        rows.append(dict(finding=f"#38 FP8/BF16 E/token, matched 235B pairs, bs {label} (n={int(mask.sum())})",
                         paper=f"median x{paper_median:.2f}", predicted=f"median x{predicted.median():.2f}; measured "
                                                                       f"now x{measured.median():.2f}",
                         number=verdict(float(predicted.median()), paper_median, 1.1),
                         driver="batch-dependent FP8 overhead", named=None, channels="", change=None))
    return rows


def diffusion(ctx: Context) -> list[dict]:
    """#55/#56 multi-GPU at the same batch, and runtime-parameter scaling (steps, resolution, frames)."""
    frame = ctx.diffusion.copy()
    pred = ctx.predict_runs(frame, "diffusion")
    frame["pred_e"], frame["pred_l"] = pred["energy_per_item_joules"].to_numpy(), pred["batch_latency_s"].to_numpy()
    rows = []
    papers = {"text-to-image": ((1.22, 1.54, 2.16), (0.70, 0.46, 0.42)),
              "text-to-video": ((1.09, 1.19, 1.33), (0.57, 0.30, 0.18))}
    for task, (energy_paper, latency_paper) in papers.items():
        sub = frame[frame["task"] == task]
        one = sub[sub["num_gpus"] == 1].groupby(["model_id", "gpu_model", "batch_size"])[
            ["energy_per_item_joules", "batch_latency_s", "pred_e", "pred_l"]].median()
        cells = []
        for n, ep, lp in zip((2, 4, 8), energy_paper, latency_paper, strict=True):
            multi = sub[sub["num_gpus"] == n].merge(one.add_suffix("_1"), left_on=["model_id", "gpu_model",
                                                    "batch_size"], right_index=True, how="inner")
            pe = (multi["pred_e"] / multi["pred_e_1"]).median()
            pl = (multi["pred_l"] / multi["pred_l_1"]).median()
            me = (multi["energy_per_item_joules"] / multi["energy_per_item_joules_1"]).median()
            cells.append((n, ep, lp, pe, pl, me, verdict(pe, ep, 1.15)))
        rows.append(dict(finding=f"#{55 if task == 'text-to-image' else 56} {task}: 2/4/8 GPUs vs 1 at the same "
                                 "batch (median)",
                         paper="E " + "/".join(f"x{c[1]:.2f}" for c in cells) + ", latency "
                               + "/".join(f"x{c[2]:.2f}" for c in cells),
                         predicted="E " + "/".join(f"x{c[3]:.2f}" for c in cells) + ", latency "
                                   + "/".join(f"x{c[4]:.2f}" for c in cells) + "; measured E now "
                                   + "/".join(f"x{c[5]:.2f}" for c in cells),
                         number=", ".join(c[6] for c in cells), driver="sequence-parallel communication, "
                         "less work per GPU", named=None, channels="", change=None))
    flux = {"model_id": "black-forest-labs/FLUX.1-dev", "task": "text-to-image", "gpu_model": B200, "num_gpus": 1,
            "batch_size": 1}
    change = ctx.change(flux, {"num_gpus": 4})
    named, top = driver_check(change, ("gpu_count", "parallelism", "communication"))
    rows.append(dict(finding="#55 example: FLUX.1-dev B200 bs1, 1 -> 4 GPUs", paper="x1.54 (T2I median)",
                     predicted=f"x{change.ratio:.2f}", number=verdict(change.ratio, 1.54),
                     driver="GPU count / sequence parallel", named=named, channels=top, change=change))
    for label, changed, expected in (("steps 50 -> 25", {"inference_steps": 25}, 0.5),
                                     ("resolution 1024^2 -> 512^2", {"image_height": 512, "image_width": 512}, 0.25)):
        change = ctx.change(flux, changed)
        named, top = driver_check(change, ("workload", "compute", "utilization"))
        rows.append(dict(finding=f"runtime parameter: FLUX.1-dev {label}",
                         paper=f"'as much or more than model size' (no number; compute scales ~x{expected})",
                         predicted=f"x{change.ratio:.2f}", number=verdict(change.ratio, expected, 1.3),
                         driver="compute volume (runtime parameters)", named=named, channels=top, change=change))
    wan = {"model_id": "Wan-AI/Wan2.1-T2V-14B-Diffusers", "task": "text-to-video", "gpu_model": B200, "num_gpus": 1,
           "batch_size": 1}
    change = ctx.change(wan, {"num_frames": 41})
    named, top = driver_check(change, ("workload", "compute", "utilization"))
    rows.append(dict(finding="runtime parameter: Wan 2.1 14B frames 81 -> 41",
                     paper="(no number; compute ~x0.5 or less, attention is quadratic in frames)",
                     predicted=f"x{change.ratio:.2f}", number=verdict(change.ratio, 0.45, 1.3),
                     driver="compute volume (runtime parameters)", named=named, channels=top, change=change))
    return rows


FINDINGS = (reasoning_vs_chat, batch_sweep, moe_vs_dense, more_gpus, b200_vs_h100, fp8, diffusion)


def _named(value) -> str:
    return "n/a (aggregate)" if value is None else ("yes" if value else "**no**")


def render(rows: list[dict], ctx: Context) -> str:
    card = ctx.predictor.card
    lines = [
        "# Diagnosis: paper findings reproduced with the trained predictors (generated)",
        "",
        f"Generated by `benchmarks/diagnosis.py` with predictor data hash `{card.data_hash}`, catalog hash "
        f"`{card.catalog_hash}`. Paper numbers are from the paper (arXiv 2601.22076) section 3; \"measured now\" is "
        "recomputed from `datasets/`.",
        "",
        "- **number**: `match` when the prediction is within x1.25 of the paper (x1.1 for ratios near 1, x1.15 "
        "for the diffusion multi-GPU medians), `direction only` when it is on the paper's side of 1, `miss` "
        "otherwise.",
        "- **driver named?**: the change is split into channels (latent factors of `feature_table`; a physics prior "
        "is split exactly, by Shapley, over the features it reads, e.g. roofline throughput -> expected batch "
        "(batch) and reference roofline step (utilization)). `yes` when the channel pushing hardest in the "
        "direction of the change is one the paper names. `n/a` for aggregates.",
        "- Trained models are predicted in-sample: their numbers say the predictor can represent the finding, not "
        "that it would discover it on an unseen model. Models absent from training are flagged.",
        "",
        "| finding | paper | prediction | number | paper's driver | driver named? | top channels (x) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['finding']} | {row['paper']} | {row['predicted']} | {row['number']} | {row['driver']} | "
                     f"{_named(row['named'])} | {row['channels']} |")
    numbers = [r["number"] for r in rows if r["number"] not in ("n/a",)]
    named = [r["named"] for r in rows if r["named"] is not None]
    lines += ["", "## Why the drivers are missed (reading of this run's attributions; check them if numbers move)", "",
              "- **#7 (same batch 128, GPQA vs chat)**: named. The feasible batch is sized at the mean context "
              "(input + output/2, as a paged KV cache holds sequences at every stage), so the batch stays near 128 "
              "and the longer context reaches the prediction through the roofline step time (KV bytes read per "
              "step), a compute-volume feature.",
              "- **#28 (MoE vs dense, each at its own largest batch)**: the number is right, but the batch channel "
              "leads: Qwen3-30B-A3B's smaller weights and KV cache let it run batch 512 against 128, and that "
              "batch gain outweighs the compute-volume drop in the attribution. At the same batch (next row) the "
              "compute channel does lead.",
              "- **#37 what-if (H100 -> B200 at the same batch, 235B Thinking 8 GPUs)**: the single-model what-if "
              "lands above the paper's typical 0.98 (see its row): the learned GPU features (B200's higher power) "
              "push it up more than the roofline prior pulls it down. The aggregate over all measured same-batch "
              "pairs is right (its row), so this is a per-model deviation.",
              "- **#40 bs16 (FP8 penalty at small batch)**: the FP8 penalty is learned through `latent/memory` "
              "(smaller weights per GPU correlate with FP8 checkpoints) more than through `software/precision`; "
              "the physics roofline prior credits FP8 with a x0.6 speed-up it does not deliver at bs16.",
              "", f"Summary: {sum('match' in n and 'miss' not in n for n in numbers)}/{len(numbers)} numbers fully "
              f"match, {sum('miss' in n for n in numbers)} contain a miss; drivers named in {sum(named)}/"
              f"{len(named)} what-ifs.", "", "## What-if summaries", ""]
    for row in rows:
        if row["change"] is not None:
            lines.append(f"- **{row['finding']}**: {row['change'].summary}")
    return "\n".join(lines) + "\n"


def main() -> int:
    ctx = Context()
    rows = []
    for finding in FINDINGS:
        rows.extend(finding(ctx))
    text = render(rows, ctx)
    OUT.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
