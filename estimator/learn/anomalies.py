"""Published runs that no GPU physics can predict, found from measurements alone (no prediction is involved).

Some ML.ENERGY v3 deployments ran *slower* on a B200 than on an H100 at the same model, task, GPU count and batch
(for example Qwen3-8B on gpqa: median ITL 32-41 ms on 1 x B200 at 8-64 sequences, 10-27 ms on 1 x H100, at about
300 W of the B200's 1,000 W). A B200 has 2.4x the H100's memory bandwidth and more compute, so such a run is paced by
something outside the GPU (the host, the serving loop), and a predictor trained on one GPU cannot see it on the
other. The evaluation reports leave-GPU-out with and without these deployments so that a reader can tell the two
sources of error apart; the headline figures always include them, and training uses every row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: (model, task, GPU count) identifies a deployment across GPU types; batch sizes are matched within it
DEPLOYMENT = ["model_id", "task", "num_gpus"]
FAST_GPU, SLOW_GPU = "B200", "H100-SXM"
PUBLISHED = "mlenergy-v3"


def b200_slower_than_h100(frame: pd.DataFrame) -> np.ndarray:
    """Boolean mask over ``frame``'s rows: the published LLM deployments (both GPUs' rows) whose median ITL on B200
    exceeds the H100's, as the median ratio over the batch sizes (``max_num_seqs``) both GPUs ran.

    Args:
        frame: canonical run frame (``estimator.learn.data.load_runs`` columns), LLM rows.

    Returns:
        ``np.ndarray`` of bool, True for every row of a flagged deployment (on either GPU).
    """
    needed = {*DEPLOYMENT, "max_num_seqs", "gpu_model", "source", "median_itl_ms"}
    if frame.empty or not needed <= set(frame.columns):
        return np.zeros(len(frame), dtype=bool)
    published = frame[frame["source"].eq(PUBLISHED)]
    keys = [*DEPLOYMENT, "max_num_seqs"]
    fast = published[published["gpu_model"].eq(FAST_GPU)].groupby(keys)["median_itl_ms"].median()
    slow = published[published["gpu_model"].eq(SLOW_GPU)].groupby(keys)["median_itl_ms"].median()
    ratio = (fast / slow).dropna()
    if ratio.empty:
        return np.zeros(len(frame), dtype=bool)
    per_deployment = ratio.groupby(level=list(range(len(DEPLOYMENT)))).median()
    flagged = set(per_deployment[per_deployment > 1.0].index)
    rows = zip(*(frame[c] for c in DEPLOYMENT), strict=True)
    in_flagged = np.array([key in flagged for key in rows], dtype=bool)
    return in_flagged & frame["source"].eq(PUBLISHED).to_numpy() & frame["gpu_model"].isin(
        [FAST_GPU, SLOW_GPU]).to_numpy()


def flagged_deployments(frame: pd.DataFrame) -> list[tuple[str, str, int]]:
    """The (model, task, GPU count) deployments :func:`b200_slower_than_h100` flags, sorted."""
    mask = b200_slower_than_h100(frame)
    return sorted({(str(m), str(t), int(n)) for m, t, n in frame.loc[mask, DEPLOYMENT].itertuples(index=False)})
