"""UNet denoisers (Stable Diffusion 1.x/2.x, SDXL): parameters and FLOPs per step, stage by stage.

A UNet is not a DiT: its ResNet blocks are 3x3 convolutions at every stage, while attention runs only inside
the transformer blocks of the cross-attention stages, at that stage's resolution and width (SDXL at 1024 px:
640 channels on a 64x64 grid and 1280 on 32x32; nothing at 128x128). The walk below follows diffusers'
``UNet2DConditionModel`` (src/diffusers/models/unets/unet_2d_condition.py, unet_2d_blocks.py): down blocks of
``layers_per_block`` ResNets (+ transformers), a mid block (ResNet, transformer, ResNet), up blocks of
``layers_per_block + 1`` ResNets fed with the skip connections (+ transformers), a 2x down/up-sampler between
stages. Norms, biases and the tiny time MLPs are left out (well under 1% of parameters and FLOPs).

Units: parameters (count), FLOPs per sample per denoising step (multiply-add = 2); ``tokens`` are latent pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

from estimator.catalog.catalog import ArchitectureSpec

TEXT_TOKENS = 77  # CLIP context length the cross-attention keys and values come from


@dataclass
class UNetCost:
    """Running totals of a UNet walk: parameters, linear/conv FLOPs and attention-score FLOPs per sample."""

    params: float = 0.0
    linear_flops: float = 0.0
    attention_flops: float = 0.0

    @property
    def flops(self) -> float:
        return self.linear_flops + self.attention_flops


def resnet_block(cost: UNetCost, c_in: int, c_out: int, tokens: float, temb: int) -> None:
    """Two 3x3 convolutions (c_in -> c_out -> c_out), a time-embedding projection, a 1x1 shortcut if widths differ."""
    params = 9 * c_in * c_out + 9 * c_out * c_out + (c_in * c_out if c_in != c_out else 0)
    cost.params += params + temb * c_out
    cost.linear_flops += 2.0 * params * tokens


def transformer_stack(cost: UNetCost, width: int, depth: int, tokens: float, cross_dim: int) -> None:
    """A Transformer2DModel: proj in/out plus ``depth`` blocks of self-attention (q, k, v, out), cross-attention
    (q, out on the image; k, v on the text) and a GEGLU feed-forward (width -> 8 x width -> ... -> width)."""
    per_block_image = 4 * width**2 + 2 * width**2 + 12 * width**2  # self-attn, cross q/out, GEGLU FF
    per_block_text = 2 * cross_dim * width
    cost.params += 2 * width**2 + depth * (per_block_image + per_block_text)
    cost.linear_flops += 2.0 * tokens * (2 * width**2 + depth * per_block_image)
    cost.linear_flops += 2.0 * TEXT_TOKENS * depth * per_block_text
    # QK^T and AV: self-attention over the stage's tokens, cross-attention over the text tokens
    cost.attention_flops += depth * (4.0 * tokens * tokens * width + 4.0 * tokens * TEXT_TOKENS * width)


def unet_cost(arch: ArchitectureSpec, height: int, width: int) -> UNetCost:
    """Parameters and per-sample FLOPs of one denoiser step of a UNet at ``height`` x ``width`` pixels."""
    channels = list(arch.unet_block_out_channels)
    depths = list(arch.unet_transformer_layers_per_block) or [0] * len(channels)
    temb = 4 * channels[0]
    grid_h = height // arch.vae_spatial_compression
    grid_w = width // arch.vae_spatial_compression
    cost = UNetCost()
    cost.params += 9 * arch.latent_channels * channels[0] * 2  # conv_in and conv_out
    cost.linear_flops += 2.0 * 9 * arch.latent_channels * channels[0] * 2 * grid_h * grid_w
    skips = [channels[0]]
    previous = channels[0]
    for stage, (out, depth) in enumerate(zip(channels, depths, strict=True)):
        tokens = (grid_h >> stage) * (grid_w >> stage)
        for _ in range(arch.unet_layers_per_block):
            resnet_block(cost, previous, out, tokens, temb)
            if depth:
                transformer_stack(cost, out, depth, tokens, arch.unet_cross_attention_dim)
            skips.append(out)
            previous = out
        if stage < len(channels) - 1:  # 3x3 stride-2 downsampler
            cost.params += 9 * out * out
            cost.linear_flops += 2.0 * 9 * out * out * tokens / 4
            skips.append(out)
    last = len(channels) - 1
    tokens = (grid_h >> last) * (grid_w >> last)
    resnet_block(cost, previous, previous, tokens, temb)
    transformer_stack(cost, previous, arch.unet_mid_transformer_layers, tokens, arch.unet_cross_attention_dim)
    resnet_block(cost, previous, previous, tokens, temb)
    for stage in reversed(range(len(channels))):
        out, depth = channels[stage], depths[stage]
        tokens = (grid_h >> stage) * (grid_w >> stage)
        for _ in range(arch.unet_layers_per_block + 1):
            resnet_block(cost, previous + skips.pop(), out, tokens, temb)
            if depth:
                transformer_stack(cost, out, depth, tokens, arch.unet_cross_attention_dim)
            previous = out
        if stage > 0:  # nearest upsample then a 3x3 convolution at the larger grid
            cost.params += 9 * out * out
            cost.linear_flops += 2.0 * 9 * out * out * (grid_h >> (stage - 1)) * (grid_w >> (stage - 1))
    return cost


def unet_flops_per_step(arch: ArchitectureSpec, height: int, width: int, batch: int) -> tuple[float, float]:
    """(total FLOPs, attention-score FLOPs) of one denoising step for a batch, doubled under classifier-free
    guidance."""
    cost = unet_cost(arch, height, width)
    cfg = 2 if arch.uses_cfg else 1
    return cost.flops * batch * cfg, cost.attention_flops * batch * cfg
