"""A UNet denoiser backend (engine ``torch-unet``): a ``UNet2DConditionModel`` with random bf16 weights of the
model's shape, run for the pipeline's steps at its resolution, with classifier-free guidance as diffusers'
``StableDiffusionXLPipeline`` and ``StableDiffusionPipeline`` (SD 1.x / 2.x) do it.

Per step: with CFG the latent batch is doubled (unconditional + conditional), the UNet runs once on it, the
halves are combined as ``u + g (c - u)``, and an Euler update (SDXL's scheduler is ``EulerDiscreteScheduler``,
scheduler/scheduler_config.json of the snapshot cited below) moves the latents.

The UNet follows diffusers' ``UNet2DConditionModel`` (src/diffusers/models/unets/unet_2d_condition.py and
unet_2d_blocks.py; resnet.py, transformers/transformer_2d.py, attention.py): ``conv_in``; a sinusoidal timestep
embedding through a two-layer SiLU MLP to ``4 x block_out_channels[0]``, plus SDXL's ``text_time`` add-embedding
(pooled text concatenated with the sinusoids of six size/crop numbers, through its own MLP; SD 1.x/2.x have none);
down stages of ``layers_per_block`` ResNet blocks (GroupNorm, SiLU, 3x3 conv, time-embedding projection,
GroupNorm, SiLU, 3x3 conv, 1x1 shortcut where the width changes), each followed by a Transformer2DModel where the
stage has attention (GroupNorm, proj_in: linear with use_linear_projection, else a 1x1 conv; BasicTransformerBlocks
of LayerNorm + self-attention, LayerNorm + cross-attention to the text context, LayerNorm + GEGLU feed-forward to
4x width; proj_out like proj_in; residual), a 3x3 stride-2 downsampler between stages; a mid block (ResNet,
transformer, ResNet); up stages of ``layers_per_block + 1`` ResNets fed with the concatenated skip connections
(+ transformers), a nearest 2x upsample and 3x3 conv between stages; GroupNorm, SiLU and ``conv_out``.

SDXL's numbers (``measure/specs/sdxl-unet-h200.toml``) are those of stabilityai/stable-diffusion-xl-base-1.0's
unet/config.json, read from the stored snapshot github:andrewcchoi/stabilityai-stable-diffusion-xl-base-1.0 at
commit bf714989e22c57ddc1c453bf74dab4521acb81d8: block_out_channels [320, 640, 1280], down_block_types
[DownBlock2D, CrossAttnDownBlock2D, CrossAttnDownBlock2D] with transformer_layers_per_block [1, 2, 10] (the first
stage has no attention), attention_head_dim [5, 10, 20] (used as head counts: 64 per head), layers_per_block 2,
cross_attention_dim 2048, addition_embed_type text_time, addition_time_embed_dim 256,
projection_class_embeddings_input_dim 2816 (= 1280 pooled + 6 x 256), norm_num_groups 32, in_channels 4,
use_linear_projection true. The text context is CLIP-L (768) and OpenCLIP bigG (1280) hidden states concatenated,
77 tokens each (text_encoder/config.json, text_encoder_2/config.json: max_position_embeddings 77, projection_dim
1280 = the pooled width).

SD 1.5 (``measure/specs/sd15-unet-h200.toml``) and SD 2.1 (``measure/specs/sd21-unet-h200.toml``): their
unet/config.json as stored at github:HDRJ-One/runwayml-stable-diffusion-v1-5 (commit
2e7465d9dffe7e53e88aea896882476ea872ca95) and github:Vikas-2025/Hugging_face_sta_dif_2.1 (commit
8d0c902020b6347a7f6d10420bb5e1bf57ff129e): block_out_channels [320, 640, 1280, 1280], down_block_types
3 x CrossAttnDownBlock2D + DownBlock2D (up blocks mirrored), layers_per_block 2, norm_num_groups 32, in_channels 4,
no addition_embed_type; SD 1.5 attention_head_dim 8 (8 heads at every width), cross_attention_dim 768,
use_linear_projection false; SD 2.1 attention_head_dim [5, 10, 20, 20] (64 per head), cross_attention_dim 1024,
use_linear_projection true. Their schedulers (scheduler/scheduler_config.json: PNDMScheduler for SD 1.5,
DDIMScheduler with v-prediction for SD 2.1) differ from Euler only in elementwise latent updates, which this
backend does as Euler; one difference in work: PNDMScheduler with skip_prk_steps lists steps + 1 timesteps
(diffusers src/diffusers/schedulers/scheduling_pndm.py, set_timesteps), so diffusers' SD 1.5 pipeline calls the
UNet 51 times for 50 steps, where this backend calls it 50 times.

Not run (ML.ENERGY's pipeline runs them once per prompt or image): the two text encoders, whose embeddings are
random tensors of their shapes here (context ``[rows, 77, cross_attention_dim]``, SDXL's pooled ``[rows, 1280]``),
and the VAE decode.
Dropout is inference-off. torch is imported inside functions only.
"""

from __future__ import annotations

from typing import Any

from measure.diffusion_schema import UNetShape


class _Rand:
    """Random weights (normal, std 0.02) on ``device``; on the meta device shapes only (parameter counting)."""

    def __init__(self, device: Any, dtype: Any, seed: int):
        import torch

        self.device, self.dtype = torch.device(device), dtype
        self.gen = None if self.device.type == "meta" else torch.Generator(device=self.device).manual_seed(seed)

    def normal(self, *dims: int) -> Any:
        import torch

        t = torch.empty(*dims, device=self.device, dtype=self.dtype)
        return t if self.gen is None else t.normal_(0.0, 0.02, generator=self.gen)

    def ones(self, n: int) -> Any:
        import torch

        return torch.ones(n, device=self.device, dtype=self.dtype)

    def zeros(self, n: int) -> Any:
        import torch

        return torch.zeros(n, device=self.device, dtype=self.dtype)

    def linear(self, n_in: int, n_out: int, bias: bool = True) -> dict:
        return {"w": self.normal(n_out, n_in), "b": self.zeros(n_out) if bias else None}

    def conv(self, c_in: int, c_out: int, k: int = 3) -> dict:
        return {"w": self.normal(c_out, c_in, k, k), "b": self.zeros(c_out)}

    def norm(self, c: int) -> dict:
        return {"g": self.ones(c), "b": self.zeros(c)}


def _resnet_weights(r: _Rand, c_in: int, c_out: int, temb: int) -> dict:
    w = {"n1": r.norm(c_in), "c1": r.conv(c_in, c_out), "t": r.linear(temb, c_out), "n2": r.norm(c_out),
         "c2": r.conv(c_out, c_out)}
    if c_in != c_out:
        w["sc"] = r.conv(c_in, c_out, 1)
    return w


def _transformer_weights(r: _Rand, c: int, depth: int, heads: int, cross: int, linear: bool) -> dict:
    def block() -> dict:
        return {"n1": r.norm(c), "q1": r.linear(c, c, False), "k1": r.linear(c, c, False),
                "v1": r.linear(c, c, False), "o1": r.linear(c, c), "n2": r.norm(c), "q2": r.linear(c, c, False),
                "k2": r.linear(cross, c, False), "v2": r.linear(cross, c, False), "o2": r.linear(c, c),
                "n3": r.norm(c), "ff1": r.linear(c, 2 * 4 * c), "ff2": r.linear(4 * c, c)}

    # use_linear_projection false (SD 1.x): proj_in / proj_out are 1x1 convolutions, the same c x c + c weights
    proj = (lambda: r.linear(c, c)) if linear else (lambda: r.conv(c, c, 1))
    return {"norm": r.norm(c), "proj_in": proj(), "proj_out": proj(), "heads": heads, "linear": linear,
            "blocks": [block() for _ in range(depth)]}


def build_unet_weights(shape: UNetShape, device: Any, dtype: Any, seed: int = 0) -> dict:
    """Every weight of the UNet of ``shape`` (linear ``[out, in]``, conv ``[out, in, k, k]``); ``device="meta"``
    gives shapes only, for counting parameters."""
    r = _Rand(device, dtype, seed)
    ch, depths, heads = shape.block_out_channels, shape.transformer_layers_per_block, shape.num_attention_heads
    temb, cross, lin = 4 * ch[0], shape.cross_attention_dim, shape.use_linear_projection
    w: dict = {"conv_in": r.conv(shape.in_channels, ch[0]), "t1": r.linear(ch[0], temb), "t2": r.linear(temb, temb),
               "down": [], "up": [], "norm_out": r.norm(ch[0]), "conv_out": r.conv(ch[0], shape.in_channels)}
    if shape.pooled_projection_dim:
        add_in = shape.pooled_projection_dim + shape.num_time_ids * shape.addition_time_embed_dim
        w["a1"], w["a2"] = r.linear(add_in, temb), r.linear(temb, temb)
    skips, prev = [ch[0]], ch[0]
    for stage, (out, depth) in enumerate(zip(ch, depths, strict=True)):
        layers = []
        for _ in range(shape.layers_per_block):
            layers.append({"res": _resnet_weights(r, prev, out, temb),
                           "attn": _transformer_weights(r, out, depth, heads[stage], cross, lin) if depth else None})
            skips.append(out)
            prev = out
        down = r.conv(out, out) if stage < len(ch) - 1 else None
        if down is not None:
            skips.append(out)
        w["down"].append({"layers": layers, "down": down})
    w["mid"] = {"res1": _resnet_weights(r, prev, prev, temb), "res2": _resnet_weights(r, prev, prev, temb),
                "attn": _transformer_weights(r, prev, shape.mid_transformer_layers, heads[-1], cross, lin)
                if shape.mid_transformer_layers else None}
    for stage in reversed(range(len(ch))):
        out, depth, layers = ch[stage], depths[stage], []
        for _ in range(shape.layers_per_block + 1):
            layers.append({"res": _resnet_weights(r, prev + skips.pop(), out, temb),
                           "attn": _transformer_weights(r, out, depth, heads[stage], cross, lin) if depth else None})
            prev = out
        w["up"].append({"layers": layers, "up": r.conv(out, out) if stage > 0 else None})
    return w


def count_parameters(w: Any) -> int:
    """Elements of every tensor in a weight tree from :func:`build_unet_weights`."""
    if isinstance(w, dict):
        return sum(count_parameters(v) for v in w.values())
    if isinstance(w, list):
        return sum(count_parameters(v) for v in w)
    return int(w.numel()) if hasattr(w, "numel") else 0


def _lin(x: Any, p: dict) -> Any:
    import torch.nn.functional as F

    return F.linear(x, p["w"], p["b"])


def _conv(x: Any, p: dict, stride: int = 1) -> Any:
    import torch.nn.functional as F

    return F.conv2d(x, p["w"], p["b"], stride=stride, padding=p["w"].shape[-1] // 2)


def _gn(x: Any, p: dict, groups: int, eps: float) -> Any:
    import torch.nn.functional as F

    return F.group_norm(x, groups, p["g"], p["b"], eps)


def _resnet(x: Any, emb: Any, p: dict, groups: int) -> Any:
    """ResnetBlock2D (resnet_time_scale_shift "default", output_scale_factor 1, eps 1e-5)."""
    import torch.nn.functional as F

    h = _conv(F.silu(_gn(x, p["n1"], groups, 1e-5)), p["c1"])
    h = h + _lin(F.silu(emb), p["t"])[:, :, None, None]
    h = _conv(F.silu(_gn(h, p["n2"], groups, 1e-5)), p["c2"])
    return (_conv(x, p["sc"]) if "sc" in p else x) + h


def _attention(q: Any, k: Any, v: Any, heads: int) -> Any:
    import torch.nn.functional as F

    b, n, c = q.shape
    d = c // heads
    q, k, v = (t.view(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)


def _transformer(x: Any, context: Any, p: dict, groups: int) -> Any:
    """Transformer2DModel (GroupNorm eps 1e-6, LayerNorm eps 1e-5); proj_in / proj_out linear on the tokens with
    use_linear_projection, else 1x1 convolutions on the feature map (diffusers applies the conv before the
    reshape to tokens and after the reshape back)."""
    import torch.nn.functional as F

    b, c, hh, ww = x.shape
    heads = p["heads"]
    h = _gn(x, p["norm"], groups, 1e-6)
    if not p["linear"]:
        h = _conv(h, p["proj_in"])
    h = h.permute(0, 2, 3, 1).reshape(b, hh * ww, c)
    if p["linear"]:
        h = _lin(h, p["proj_in"])
    for blk in p["blocks"]:
        n = F.layer_norm(h, (c,), blk["n1"]["g"], blk["n1"]["b"])
        h = h + _lin(_attention(_lin(n, blk["q1"]), _lin(n, blk["k1"]), _lin(n, blk["v1"]), heads), blk["o1"])
        n = F.layer_norm(h, (c,), blk["n2"]["g"], blk["n2"]["b"])
        h = h + _lin(_attention(_lin(n, blk["q2"]), _lin(context, blk["k2"]), _lin(context, blk["v2"]), heads),
                     blk["o2"])
        n = F.layer_norm(h, (c,), blk["n3"]["g"], blk["n3"]["b"])
        value, gate = _lin(n, blk["ff1"]).chunk(2, dim=-1)
        h = h + _lin(value * F.gelu(gate), blk["ff2"])
    if p["linear"]:
        return _lin(h, p["proj_out"]).reshape(b, hh, ww, c).permute(0, 3, 1, 2) + x
    return _conv(h.reshape(b, hh, ww, c).permute(0, 3, 1, 2), p["proj_out"]) + x


def sinusoid(t: Any, dim: int) -> Any:
    """diffusers' ``Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)`` of ``t [n]``: ``[n, dim]``."""
    import math

    import torch

    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


def _embedding(w: dict, shape: UNetShape, t: Any, pooled: Any, time_ids: Any, dtype: Any) -> Any:
    import torch.nn.functional as F

    emb = _lin(F.silu(_lin(sinusoid(t, shape.block_out_channels[0]).to(dtype), w["t1"])), w["t2"])
    if "a1" in w:
        rows = time_ids.shape[0]
        ids = sinusoid(time_ids.flatten(), shape.addition_time_embed_dim).reshape(rows, -1).to(dtype)
        add = _lin(F.silu(_lin(_cat_last(pooled, ids), w["a1"])), w["a2"])
        emb = emb + add
    return emb


def _cat_last(a: Any, b: Any) -> Any:
    import torch

    return torch.cat([a, b], dim=-1)


def denoise(w: dict, shape: UNetShape, latents: Any, t: Any, context: Any, pooled: Any, time_ids: Any) -> Any:
    """One UNet pass: noise prediction ``[b, C, H, W]`` for ``latents [b, C, H, W]`` at timesteps ``t [b]``."""
    import torch
    import torch.nn.functional as F

    g = shape.norm_num_groups
    emb = _embedding(w, shape, t, pooled, time_ids, latents.dtype)
    x = _conv(latents, w["conv_in"])
    skips = [x]
    for stage in w["down"]:
        for layer in stage["layers"]:
            x = _resnet(x, emb, layer["res"], g)
            if layer["attn"] is not None:
                x = _transformer(x, context, layer["attn"], g)
            skips.append(x)
        if stage["down"] is not None:
            x = _conv(x, stage["down"], stride=2)
            skips.append(x)
    x = _resnet(x, emb, w["mid"]["res1"], g)
    if w["mid"]["attn"] is not None:
        x = _transformer(x, context, w["mid"]["attn"], g)
    x = _resnet(x, emb, w["mid"]["res2"], g)
    for stage in w["up"]:
        for layer in stage["layers"]:
            x = _resnet(torch.cat([x, skips.pop()], dim=1), emb, layer["res"], g)
            if layer["attn"] is not None:
                x = _transformer(x, context, layer["attn"], g)
        if stage["up"] is not None:
            x = _conv(F.interpolate(x, scale_factor=2.0, mode="nearest"), stage["up"])
    return _conv(F.silu(_gn(x, w["norm_out"], g, 1e-5)), w["conv_out"])


def generate_images(w: dict, shape: UNetShape, batch: int, steps: int, height: int, width: int, cfg: bool,
                    guidance: float, gen: Any, device: Any, dtype: Any) -> Any:
    """The pipeline's denoising loop for ``batch`` images; returns the final latents ``[batch, C, H/8, W/8]``.

    Euler as EulerDiscreteScheduler does it for epsilon prediction: the model input is scaled by
    ``1 / sqrt(sigma^2 + 1)`` and the latents move by ``(sigma_next - sigma) x eps`` (:func:`euler_schedule`)."""
    import torch

    f = shape.vae_spatial_compression
    latents = torch.randn(batch, shape.in_channels, height // f, width // f, device=device, dtype=dtype, generator=gen)
    rows = 2 * batch if cfg else batch
    context = torch.randn(rows, shape.text_tokens, shape.cross_attention_dim, device=device, dtype=dtype,
                          generator=gen)
    pooled = torch.randn(rows, shape.pooled_projection_dim, device=device, dtype=dtype, generator=gen)
    # SDXL's add_time_ids: original size, crop top-left, target size (the pipeline's defaults: the image size, 0, 0)
    time_ids = torch.tensor([height, width, 0, 0, height, width][:shape.num_time_ids], device=device,
                            dtype=torch.float32).expand(rows, -1)
    timesteps, sigmas = (x.to(device) for x in euler_schedule(steps))
    latents = latents * sigmas[0].to(dtype)
    for i in range(steps):
        x_in = torch.cat([latents, latents]) if cfg else latents
        x_in = x_in / (sigmas[i] ** 2 + 1).sqrt().to(dtype)
        eps = denoise(w, shape, x_in, timesteps[i].expand(rows), context, pooled, time_ids)
        if cfg:
            uncond, cond = eps.chunk(2)
            eps = uncond + guidance * (cond - uncond)
        latents = latents + (sigmas[i + 1] - sigmas[i]).to(dtype) * eps
    return latents


def euler_schedule(steps: int) -> tuple[Any, Any]:
    """(timesteps ``[steps]``, sigmas ``[steps + 1]``) of SDXL's EulerDiscreteScheduler: betas "scaled_linear"
    from 0.00085 to 0.012 over 1000 training steps, "leading" spacing with steps_offset 1 (scheduler_config.json of
    the snapshot cited in the module docstring); the last sigma is 0."""
    import torch

    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    all_sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
    timesteps = (torch.arange(steps, dtype=torch.float64) * (1000 // steps)).flip(0) + 1
    sigmas = torch.cat([all_sigmas[timesteps.long()], torch.zeros(1, dtype=torch.float64)])
    return timesteps.float(), sigmas.float()
