"""A decode step takes a fixed time per decoder block beyond its roofline, the same on every GPU; a hybrid's blocks
all count, for that floor and for its tensor-parallel collectives.

At batch 8 the published runs spend 140-230 us per layer on B200 and 200-280 us on H100 whatever the model's size;
for Llama-3.1-8B that is the weight-read roofline plus ~80 us per layer on both GPUs. Without this term the
roofline carried small models from one GPU to another by the full bandwidth ratio (B200/H100: 0.42), and a held-out
GPU was predicted far too slow or too fast. These tests fail if the floor leaves the decode step, if it stops being
the same on both GPUs, or if a hybrid's Mamba and MLP blocks stop being counted (Nemotron-H runs 56 blocks in
sequence, of which only 4 are attention layers: counting only those under-states its floor 14-fold).
"""

import pytest

from estimator.catalog.catalog import load_catalog
from estimator.physics import memory, serving, step


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_hand_values(catalog):
    """Llama-3.1-8B: 32 x 80 us = 2.56 ms; Nemotron-Nano-9B-v2: (4 + 27 + 25) x 80 us = 4.48 ms."""
    llama = catalog.models["meta-llama/Llama-3.1-8B-Instruct"]
    nemotron = catalog.models["nvidia/NVIDIA-Nemotron-Nano-9B-v2"]
    assert serving.decoder_blocks(llama) == 32
    assert serving.decode_floor_s(llama) == pytest.approx(2.56e-3)
    assert serving.decoder_blocks(nemotron) == 56
    assert serving.decode_floor_s(nemotron) == pytest.approx(4.48e-3)


def test_floor_is_in_both_rooflines_and_shrinks_the_gpu_ratio(catalog):
    """Llama-3.1-8B at batch 8: the same 2.56 ms on B200 and on the H100 reference, so the B200/H100 step ratio is
    (2.0 ms weights + 2.56) / (4.8 + 2.56), about 0.6, not the bare bandwidth ratio 0.42."""
    arch = catalog.models["meta-llama/Llama-3.1-8B-Instruct"]
    b200, h100 = catalog.gpus["B200"], catalog.gpus["H100-SXM"]
    pool = memory.llm_kv_pool_bytes_per_gpu(arch, b200, memory.weight_bytes_per_gpu(arch, "bfloat16", 1), 1, 8)
    s = step.decode_step(arch, b200, h100, precision="bfloat16", num_gpus=1, max_num_seqs=8,
                         kv_pool_per_gpu_bytes=pool, data_parallel=1, tensor_parallel=1, expert_parallel=1,
                         input_tokens=90.0, output_tokens=350.0)
    assert s.kernel_overhead_s == pytest.approx(2.56e-3)
    assert s.roofline_step_s - (s.compute_s + s.memory_s) == pytest.approx(2.56e-3)
    assert s.ref_roofline_step_s - (s.ref_compute_s + s.ref_memory_s) == pytest.approx(2.56e-3)
    bare = (s.compute_s + s.memory_s) / (s.ref_compute_s + s.ref_memory_s)
    assert bare == pytest.approx(3.35 / 8.0, rel=0.05)
    assert 0.55 < s.roofline_step_s / s.ref_roofline_step_s < 0.65


def test_hybrid_tensor_parallel_collectives_count_every_block(catalog):
    """Under TP a hybrid all-reduces after each of its 56 blocks (Nemotron-Nano-9B-v2), not 2 x its 4 attention
    layers; a transformer keeps two per layer (Llama-3.1-70B, 80 layers: 160)."""
    nemotron = catalog.models["nvidia/NVIDIA-Nemotron-Nano-9B-v2"]
    assert serving.allreduces_per_decode_step(nemotron, 2) == 56
    ring_bytes = 56 * nemotron.hidden_size * 2 * 2 * (2 - 1) / 2  # all-reduces x hidden x bf16 x ring factor
    assert step.tensor_parallel_comm_bytes_per_token(nemotron, 2) == pytest.approx(ring_bytes)
    assert serving.allreduces_per_decode_step(catalog.models["meta-llama/Llama-3.1-70B-Instruct"], 4) == 160
