"""Tensor parallelism for the torch backends: one process per GPU, torch.distributed (NCCL on GPUs, gloo on CPU).

Megatron-style sharding, as vLLM's TP does it: the QKV projection and the FFN's gate/up projection are
column-parallel (each rank holds ``heads / tp`` query and KV heads and ``intermediate / tp`` FFN columns),
attention's output projection and the FFN's down projection are row-parallel, each followed by one all-reduce
(two per layer); the LM head is split over the vocabulary and the greedy token is the argmax over every rank's
slice (an all-gather of each rank's best logit and index). The embedding is replicated. With random weights a
rank builds its own shard directly (:func:`measure.backends.torch_dense.local_shape`); :func:`shard_weights`
cuts a full weight set the same way, for tests that compare TP with one device.

Under CUDA graphs the NCCL collectives are captured with the step. NVLink multicast (NVLS) stays off in every
process (``NCCL_NVLS_ENABLE=0``, ``TORCH_SYMM_MEM_DISABLE_MULTICAST=1``, ``NVSHMEM_DISABLE_NVLS=1``; the
lent multi-GPU machines require it, ``benchmarks/measure_selfcheck.md``; the variables: NCCL's environment docs,
https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html).
"""

from __future__ import annotations

import os
from typing import Any

from measure.schema import ModelShape

#: environment every TP process runs with (NVLink multicast off)
NO_MULTICAST_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


class TensorParallel:
    """The ``comm`` of one rank: all-reduce (sum) and row gathers over the default process group."""

    def __init__(self, rank: int, world: int, device: Any):
        self.rank, self.world, self.device = rank, world, device

    def all_reduce(self, x: Any) -> Any:
        import torch.distributed as dist

        dist.all_reduce(x)
        return x

    def gather_rows(self, x: Any) -> Any:
        """``x [n]`` from every rank stacked as ``[world, n]`` (all_gather_into_tensor on NCCL, a list on gloo)."""
        import torch
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            out = torch.empty((self.world, *x.shape), dtype=x.dtype, device=x.device)
            dist.all_gather_into_tensor(out, x.contiguous())
            return out
        parts = [torch.empty_like(x) for _ in range(self.world)]
        dist.all_gather(parts, x.contiguous())
        return torch.stack(parts)

    def any_true(self, flag: bool) -> bool:
        """True when any rank passes True (a host-synchronising all-reduce; call it between steps only)."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()


def init_process_group(rank: int, world: int, backend: str, port: int) -> None:
    """Join the default process group on localhost with multicast switched off first."""
    import torch.distributed as dist

    os.environ.update(NO_MULTICAST_ENV)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group(backend, rank=rank, world_size=world)


def _split_cols(t: Any, rank: int, world: int) -> Any:
    n = t.shape[-1] // world
    return t[..., rank * n: (rank + 1) * n].contiguous()


def _split_rows(t: Any, rank: int, world: int) -> Any:
    n = t.shape[0] // world
    return t[rank * n: (rank + 1) * n].contiguous()


def shard_weights(w: dict, shape: ModelShape, rank: int, world: int) -> dict:
    """Rank ``rank``'s shard of a full (unsharded, dense) weight set, matching ``local_shape(shape, world)``."""
    import torch

    d = shape.resolved_head_dim
    q, kv = shape.num_attention_heads * d, shape.num_key_value_heads * d
    out = {"embed": w["embed"], "norm": w["norm"], "lm_head": _split_cols(w["lm_head"], rank, world), "layers": []}
    for layer in w["layers"]:
        wq, wk, wv = layer["wqkv"].split([q, kv, kv], dim=-1)
        gate, up = layer["wgu"].chunk(2, dim=-1)
        local = {key: layer[key] for key in ("ln1", "ln2", "qn", "kn") if key in layer}
        local["wqkv"] = torch.cat([_split_cols(t, rank, world) for t in (wq, wk, wv)], dim=-1)
        local["wo"] = _split_rows(layer["wo"], rank, world)
        local["wgu"] = torch.cat([_split_cols(gate, rank, world), _split_cols(up, rank, world)], dim=-1)
        local["wd"] = _split_rows(layer["wd"], rank, world)
        out["layers"].append(local)
    return out
