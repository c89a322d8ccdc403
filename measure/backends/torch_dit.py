"""A DiT denoiser backend (engine ``torch-dit``): an MMDiT with random bf16 weights of the model's shape, run
for the pipeline's steps at its resolution, with classifier-free guidance as the diffusers pipeline does it.

Per step (diffusers' ``StableDiffusion3Pipeline`` / ``FluxPipeline`` loop): with CFG the latent batch is doubled
(unconditional + conditional, concatenated), the denoiser runs once on it, the two halves are combined as
``u + g (c - u)``, and a flow-matching Euler update moves the latents. The denoiser: patchify, a timestep + pooled
text conditioning vector, SD3 joint blocks (adaLN modulation, per-stream QKV with RMS q/k norm, one attention
over text + image tokens, per-stream output projections and GELU MLPs; SD3.5's dual-attention blocks add an
image-only attention), FLUX-style single-stream blocks, adaLN output and unpatchify.

Not run (ML.ENERGY's pipeline runs them once per prompt or image): the text encoders, whose embeddings are
random tensors of their shapes here, and the VAE decode; FLUX's RoPE is left out (elementwise, not a matmul).
torch is imported inside functions only.
"""

from __future__ import annotations

from typing import Any

from measure.diffusion_schema import DiTShape


def build_dit_weights(shape: DiTShape, device: Any, dtype: Any, seed: int = 0) -> dict:
    """Random weights (normal, std 0.02; matrices [in, out]) of every block of ``shape``."""
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)
    h, mlp = shape.hidden_size, int(shape.hidden_size * shape.mlp_ratio)
    patch_dim = shape.in_channels * shape.patch_size**2

    def rand(*dims: int) -> Any:
        return torch.empty(*dims, device=device, dtype=dtype).normal_(0.0, 0.02, generator=gen)

    def stream(mods: int) -> dict:
        return {"mod": rand(h, mods * h), "qkv": rand(h, 3 * h), "out": rand(h, h), "fc1": rand(h, mlp),
                "fc2": rand(mlp, h)}

    w = {"patch": rand(patch_dim, h), "ctx": rand(shape.joint_attention_dim, h), "t1": rand(256, h), "t2": rand(h, h),
         "pool": rand(shape.pooled_projection_dim, h), "out_mod": rand(h, 2 * h), "proj_out": rand(h, patch_dim),
         "joint": [], "single": []}
    for i in range(shape.num_joint_layers):
        dual = i < shape.dual_attention_layers
        block = {"x": stream(9 if dual else 6), "c": stream(6)}
        if dual:
            block["x2"] = {"qkv": rand(h, 3 * h), "out": rand(h, h)}
        w["joint"].append(block)
    for _ in range(shape.num_single_layers):
        w["single"].append({"mod": rand(h, 3 * h), "in": rand(h, 3 * h + mlp), "out": rand(h + mlp, h)})
    return w


def _rms(x: Any) -> Any:
    import torch

    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype)


def _ln(x: Any) -> Any:
    import torch.nn.functional as F

    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


def _attention(qkv: Any, heads: int) -> Any:
    """Self-attention over ``qkv [b, n, 3h]`` with RMS q/k norm; returns ``[b, n, h]``."""
    import torch.nn.functional as F

    b, n, three_h = qkv.shape
    d = three_h // 3 // heads
    q, k, v = qkv.view(b, n, 3, heads, d).permute(2, 0, 3, 1, 4)
    o = F.scaled_dot_product_attention(_rms(q), _rms(k), v)
    return o.transpose(1, 2).reshape(b, n, heads * d)


def _joint_block(x: Any, c: Any, cond: Any, block: dict, heads: int) -> tuple[Any, Any]:
    import torch
    import torch.nn.functional as F

    mx = (F.silu(cond) @ block["x"]["mod"])[:, None].chunk(9 if "x2" in block else 6, dim=-1)
    mc = (F.silu(cond) @ block["c"]["mod"])[:, None].chunk(6, dim=-1)
    xn, cn = _ln(x) * (1 + mx[1]) + mx[0], _ln(c) * (1 + mc[1]) + mc[0]
    n_text = c.shape[1]
    o = _attention(torch.cat([cn @ block["c"]["qkv"], xn @ block["x"]["qkv"]], dim=1), heads)
    x = x + mx[2] * (o[:, n_text:] @ block["x"]["out"])
    c = c + mc[2] * (o[:, :n_text] @ block["c"]["out"])
    if "x2" in block:
        x2 = _ln(x) * (1 + mx[7]) + mx[6]
        x = x + mx[8] * (_attention(x2 @ block["x2"]["qkv"], heads) @ block["x2"]["out"])
    x = x + mx[5] * (F.gelu((_ln(x) * (1 + mx[4]) + mx[3]) @ block["x"]["fc1"], approximate="tanh") @ block["x"]["fc2"])
    c = c + mc[5] * (F.gelu((_ln(c) * (1 + mc[4]) + mc[3]) @ block["c"]["fc1"], approximate="tanh") @ block["c"]["fc2"])
    return x, c


def _single_block(s: Any, cond: Any, block: dict, heads: int, hidden: int) -> Any:
    import torch
    import torch.nn.functional as F

    shift, scale, gate = (F.silu(cond) @ block["mod"])[:, None].chunk(3, dim=-1)
    qkv, mlp = ((_ln(s) * (1 + scale) + shift) @ block["in"]).split([3 * hidden, block["in"].shape[1] - 3 * hidden],
                                                                    dim=-1)
    out = torch.cat([_attention(qkv, heads), F.gelu(mlp, approximate="tanh")], dim=-1) @ block["out"]
    return s + gate * out


def timestep_embedding(t: Any, dim: int = 256) -> Any:
    """Sinusoidal embedding of timesteps ``t [b]`` (0..1000) as in diffusers' ``Timesteps``."""
    import math

    import torch

    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


def denoise(w: dict, shape: DiTShape, latents: Any, t: Any, text: Any, pooled: Any) -> Any:
    """One denoiser pass: velocity ``[b, C, H, W]`` for ``latents [b, C, H, W]`` at timesteps ``t [b]``."""
    import torch.nn.functional as F

    b, ch, hh, ww = latents.shape
    p, h, heads = shape.patch_size, shape.hidden_size, shape.num_attention_heads
    x = latents.view(b, ch, hh // p, p, ww // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, ch * p * p) @ w["patch"]
    c = text @ w["ctx"]
    cond = F.silu(timestep_embedding(t).to(x.dtype) @ w["t1"]) @ w["t2"] + pooled @ w["pool"]
    for block in w["joint"]:
        x, c = _joint_block(x, c, cond, block, heads)
    if w["single"]:
        s = torch_cat(c, x)
        for block in w["single"]:
            s = _single_block(s, cond, block, heads, h)
        x = s[:, c.shape[1]:]
    shift, scale = (F.silu(cond) @ w["out_mod"])[:, None].chunk(2, dim=-1)
    out = (_ln(x) * (1 + scale) + shift) @ w["proj_out"]
    return out.view(b, hh // p, ww // p, ch, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, ch, hh, ww)


def torch_cat(a: Any, b: Any) -> Any:
    import torch

    return torch.cat([a, b], dim=1)


def generate_images(w: dict, shape: DiTShape, batch: int, steps: int, height: int, width: int, cfg: bool,
                    guidance: float, gen: Any, device: Any, dtype: Any) -> Any:
    """The pipeline's denoising loop for ``batch`` images; returns the final latents ``[batch, C, H/8, W/8]``."""
    import torch

    f = shape.vae_spatial_compression
    latents = torch.randn(batch, shape.in_channels, height // f, width // f, device=device, dtype=dtype, generator=gen)
    rows = 2 * batch if cfg else batch
    text = torch.randn(rows, shape.text_tokens, shape.joint_attention_dim, device=device, dtype=dtype, generator=gen)
    pooled = torch.randn(rows, shape.pooled_projection_dim, device=device, dtype=dtype, generator=gen)
    sigmas = torch.linspace(1.0, 0.0, steps + 1, device=device)
    for i in range(steps):
        x_in = torch.cat([latents, latents]) if cfg else latents
        v = denoise(w, shape, x_in, (sigmas[i] * 1000).expand(rows), text, pooled)
        if cfg:
            uncond, cond = v.chunk(2)
            v = uncond + guidance * (cond - uncond)
        latents = latents + (sigmas[i + 1] - sigmas[i]).to(dtype) * v
    return latents
