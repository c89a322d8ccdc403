"""Parameter counts derived from architecture fields (one named step per block type).

Counts are in parameters (not bytes). Norm weights and biases are ignored (well under 0.1% of any LLM).
These counts are checked against each catalog entry's stated total, which is how catalog typos are caught.
"""

from __future__ import annotations

from dataclasses import dataclass

from estimator.catalog.catalog import ArchitectureSpec


@dataclass(frozen=True)
class ParamBreakdown:
    """Parameters of one model by block, in billions."""

    embedding_billions: float
    attention_billions: float
    dense_mlp_billions: float
    routed_experts_billions: float
    shared_experts_billions: float
    router_billions: float
    mamba_billions: float
    extra_billions: float  # vision encoder + other_params_billions

    @property
    def total_billions(self) -> float:
        return (self.embedding_billions + self.attention_billions + self.dense_mlp_billions
                + self.routed_experts_billions + self.shared_experts_billions + self.router_billions
                + self.mamba_billions + self.extra_billions)


def attention_params_per_layer(arch: ArchitectureSpec) -> int:
    """Projection weights of one attention layer (GQA/MHA or MLA)."""
    h = arch.hidden_size
    if arch.attention == "mla":
        qk_head = arch.head_dim + arch.qk_rope_head_dim
        v_head = arch.v_head_dim or arch.head_dim
        heads = arch.num_attention_heads
        q = h * arch.q_lora_rank + arch.q_lora_rank * heads * qk_head if arch.q_lora_rank else h * heads * qk_head
        kv = h * (arch.kv_lora_rank + arch.qk_rope_head_dim) + arch.kv_lora_rank * heads * (arch.head_dim + v_head)
        return q + kv + heads * v_head * h
    head_dim = arch.head_dim or h // max(arch.num_attention_heads, 1)
    q_and_o = 2 * h * arch.num_attention_heads * head_dim
    k_and_v = 2 * h * (arch.num_kv_heads or arch.num_attention_heads) * head_dim
    return q_and_o + k_and_v


def mlp_params(hidden_size: int, intermediate_size: int, gated: bool) -> int:
    """One MLP (or one expert): 3 matrices when gated (SwiGLU), else 2."""
    return (3 if gated else 2) * hidden_size * intermediate_size


def mamba_params_per_layer(arch: ArchitectureSpec) -> int:
    """One Mamba2 mixer: in_proj (z, x, B, C, dt), depthwise conv, out_proj."""
    d_inner = arch.mamba_num_heads * arch.mamba_head_dim
    groups_state = arch.mamba_n_groups * arch.mamba_d_state
    in_proj = arch.hidden_size * (2 * d_inner + 2 * groups_state + arch.mamba_num_heads)
    conv = (d_inner + 2 * groups_state) * arch.mamba_conv_kernel
    return in_proj + conv + d_inner * arch.hidden_size


def moe_layer_count(arch: ArchitectureSpec) -> int:
    """Layers whose MLP is a mixture of experts."""
    if arch.architecture != "moe":
        return 0
    return (arch.num_mlp_layers or arch.num_layers) - arch.num_dense_layers


#: id(arch) -> (arch, breakdown): specs are frozen, and holding the spec keeps its id from being reused
_BREAKDOWNS: dict[int, tuple[ArchitectureSpec, ParamBreakdown]] = {}


def param_breakdown(arch: ArchitectureSpec) -> ParamBreakdown:
    """:func:`derive_param_breakdown`, remembered per spec (prediction asks for it several times per row)."""
    cached = _BREAKDOWNS.get(id(arch))
    if cached is None or cached[0] is not arch:
        if len(_BREAKDOWNS) > 4096:
            _BREAKDOWNS.clear()
        cached = _BREAKDOWNS[id(arch)] = (arch, derive_param_breakdown(arch))
    return cached[1]


def derive_param_breakdown(arch: ArchitectureSpec) -> ParamBreakdown:
    """Derive parameter counts of an LLM/MLLM from its catalog fields.

    Assumptions: every layer counted in ``num_layers`` has one attention block, except that hybrids put their
    Mamba mixers in ``num_mamba_layers``; ``num_mlp_layers`` (0 = num_layers) layers have an MLP or MoE block,
    of which ``num_dense_layers`` are dense in an MoE model.
    """
    billion = 1e9
    h = arch.hidden_size
    embedding = arch.vocab_size * h * (1 if arch.tie_word_embeddings else 2)
    attention = arch.num_layers * attention_params_per_layer(arch)
    mlp_layers = arch.num_mlp_layers or arch.num_layers
    moe_layers = moe_layer_count(arch)
    dense_layers = mlp_layers - moe_layers
    dense = dense_layers * mlp_params(h, arch.intermediate_size, arch.mlp_gated)
    routed = moe_layers * arch.num_experts * mlp_params(h, arch.moe_intermediate_size, arch.mlp_gated)
    shared_width = arch.shared_expert_intermediate_size or arch.moe_intermediate_size
    shared = moe_layers * arch.num_shared_experts * mlp_params(h, shared_width, arch.mlp_gated)
    router = moe_layers * h * arch.num_experts
    mamba = arch.num_mamba_layers * mamba_params_per_layer(arch) if arch.num_mamba_layers else 0
    return ParamBreakdown(
        embedding_billions=embedding / billion,
        attention_billions=attention / billion,
        dense_mlp_billions=dense / billion,
        routed_experts_billions=routed / billion,
        shared_experts_billions=shared / billion,
        router_billions=router / billion,
        mamba_billions=mamba / billion,
        extra_billions=arch.vision_params_billions + arch.other_params_billions,
    )


def active_params_billions_derived(arch: ArchitectureSpec) -> float:
    """Parameters touched per token: routed experts scaled by top-k / num_experts; input embedding excluded
    only in the sense that one row is read (it is counted here as in the published 'active' figures)."""
    parts = param_breakdown(arch)
    routed_share = (arch.num_experts_per_token / arch.num_experts) if arch.num_experts else 0.0
    return parts.total_billions - parts.routed_experts_billions * (1.0 - routed_share)
