"""Global and local (per-patch) image features of an open_clip ViT in one image-tower pass.

GL-MCM's local features (Miyai et al., IJCV 2025; authors' code AtsuMiyai/GL-MCM at commit
8708a08442e5650889052fd86900969fade06a1b, ``clip/model.py``) are not the patch tokens the
last transformer block outputs: the authors run the last block a second time on the same
input with every token attending only to itself (the attention output of token ``i`` is
``out_proj(v_i)``, its value projection through the output projection), keep the residual and
MLP, then apply ``ln_post`` and ``proj`` to each patch token (the class token dropped):

    u_i    = z_i + out_proj(W_v ln_1(z_i) + b_v)          z = input of the last block
    u_i    = u_i + mlp(ln_2(u_i))
    l_i    = ln_post(u_i) @ proj                          i = 1 .. P (patches only)

The global feature is the tower's ordinary output (the last block with full attention, class
token, ``ln_post``, ``proj``): bit for bit what ``clip.encode_image`` returns, as both share the
blocks before the last. The extra cost is one value projection, one output projection and one
MLP over the tokens of the last block (about one block of twelve for ViT-B/16).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class NoPatchTokens(ValueError):
    """The image tower has no patch tokens GL-MCM can read (a ResNet CLIP, attention pooling)."""


def _why_unsupported(visual: nn.Module) -> str:
    """Empty when ``visual`` is an open_clip ViT with class-token pooling and standard blocks."""
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    if not isinstance(visual, VisionTransformer):
        return f"its image tower is a {type(visual).__name__}, which has no patch tokens"
    if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
        return "its image tower pools tokens by attention or averaging, not by the class token"
    if visual.proj is None:
        return "its image tower has no output projection"
    last = visual.transformer.resblocks[-1]
    if not isinstance(last, ResidualAttentionBlock) or hasattr(last, "ln_1_kv") \
            or not isinstance(last.attn, nn.MultiheadAttention) or not last.attn._qkv_same_embed_dim:
        return f"its last block is a {type(last).__name__} without a packed value projection"
    return ""


def check_patch_tokens(visual: nn.Module, model: str) -> None:
    """One line naming ``model`` and the fix when ``visual`` has no usable patch tokens."""
    why = _why_unsupported(visual)
    if why:
        raise NoPatchTokens(f"model {model!r} gives no local features: {why}; GL-MCM needs an open_clip "
                            "ViT CLIP (class-token pooling), e.g. --model ViT-B-16 --pretrained openai")


def _value_path(block: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The last block with each token attending only to itself (the authors' local path)."""
    attn = block.attn
    d = z.shape[-1]
    bias = attn.in_proj_bias[2 * d:] if attn.in_proj_bias is not None else None
    u = z + block.ls_1(attn.out_proj(F.linear(block.ln_1(z), attn.in_proj_weight[2 * d:], bias)))
    return u + block.ls_2(block.mlp(block.ln_2(u)))


def global_and_local(visual: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(global [B, d], local [B, P, d])``, unnormalised, in the tower's dtype (the module docstring).

    ``visual`` must pass :func:`check_patch_tokens`."""
    x = visual._embeds(images)
    transformer = visual.transformer
    if not transformer.batch_first:
        x = x.transpose(0, 1).contiguous()
    blocks = transformer.resblocks
    for block in blocks[:-1]:
        x = block(x, attn_mask=None)
    out, local = blocks[-1](x, attn_mask=None), _value_path(blocks[-1], x)
    if not transformer.batch_first:
        out, local = out.transpose(0, 1), local.transpose(0, 1)
    pooled, _ = visual._pool(out)
    return pooled @ visual.proj, visual.ln_post(local[:, 1:]) @ visual.proj
