"""The leave-GPU-out breakdown drops only deployments whose *measurements* show a B200 slower than an H100.

Why: the report's second per-direction line must leave out exactly what its rule says (a rule on measured ITL, no
prediction involved), on both GPUs' rows of the deployment, and never a local run or a deployment that is faster on
the B200. If the rule drifted (e.g. flagged by prediction error), the line would flatter the predictor.
"""

import numpy as np
import pandas as pd

from estimator.learn.anomalies import b200_slower_than_h100, flagged_deployments


def _rows(model, task, gpu, itls, source="mlenergy-v3", num_gpus=1):
    return [{"model_id": model, "task": task, "num_gpus": num_gpus, "gpu_model": gpu, "source": source,
             "max_num_seqs": b, "median_itl_ms": itl} for b, itl in zip((8, 16, 32), itls, strict=True)]


def test_flags_both_gpus_rows_of_a_deployment_slower_on_b200_only():
    frame = pd.DataFrame(
        _rows("slow", "gpqa", "B200", (30, 32, 35)) + _rows("slow", "gpqa", "H100-SXM", (10, 12, 15))
        + _rows("fast", "gpqa", "B200", (5, 6, 8)) + _rows("fast", "gpqa", "H100-SXM", (8, 9, 11))
        # same model and task on two GPUs of each: a different deployment, faster on B200
        + _rows("slow", "gpqa", "B200", (5, 6, 7), num_gpus=2)
        + _rows("slow", "gpqa", "H100-SXM", (8, 9, 10), num_gpus=2)
        + _rows("slow", "gpqa", "H200", (12, 13, 14), source="local:h200.jsonl"))
    mask = b200_slower_than_h100(frame)
    assert mask.tolist() == [True] * 6 + [False] * 15
    assert flagged_deployments(frame) == [("slow", "gpqa", 1)]


def test_a_deployment_measured_on_one_gpu_only_is_never_flagged():
    frame = pd.DataFrame(_rows("only", "chat", "B200", (50, 60, 70)))
    assert not b200_slower_than_h100(frame).any()
    assert b200_slower_than_h100(frame.iloc[:0]).dtype == np.bool_
