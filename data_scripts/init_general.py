"""Start the general prior from a shipped 64-pixel checkpoint's weights, with its attention removed.

    python data_scripts/init_general.py ellipses64 runs/general_init
    sgm-inverse train general --workdir training_state/general --init-from runs/general_init ...

The shipped brain64 / ellipses64 U-Nets have the general prior's architecture plus self-attention (at 16 px
and in the middle block). Attention ties every pixel to the whole image, which a prior applied at any size
must not do, so the general network has none (UNetConfig(attn_resolutions=(), mid_attention=False)). This
copies every convolution, normalisation and embedding weight of the parent into that network (the middle
block's second ResBlock moves from index 2 to 1) and drops the attention weights; fine-tuning on the general
corpus then repairs what the removed attention did. The written checkpoint carries the parent's training
record, so the general prior's reported cost includes the parent's images and hours (`--init-from`).
The SDE is the general recipe's (VE, sigma_max 80): the parent's noise embedding is reused beyond its 40.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from sgm_inverse import VESDE, ScoreModel, load_score_model, save_score_model
from sgm_inverse.nets import UNet, UNetConfig

SIGMA_MAX = 80.0


def without_attention(state: dict) -> dict:
    """The parent's state dict mapped onto the attention-free U-Net (attention weights dropped)."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] in ("down", "up") and parts[2] != "0":      # [ResBlock, AttentionBlock] blocks
            continue
        if parts[0] == "mid":
            if parts[1] == "1":                                  # the middle attention
                continue
            if parts[1] == "2":
                parts[1] = "1"
        out[".".join(parts)] = value
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("parent", help="a shipped name or checkpoint path with the general prior's convolutions")
    ap.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    parent = load_score_model(args.parent)
    pc = parent.network.config
    cfg = UNetConfig(in_channels=pc.in_channels, base_channels=pc.base_channels, channel_mult=pc.channel_mult,
                     num_res_blocks=pc.num_res_blocks, attn_resolutions=(), image_size=pc.image_size,
                     embedding=pc.embedding, mid_attention=False)
    net = UNet(cfg)
    net.load_state_dict(without_attention(parent.network.state_dict()), strict=True)
    model = ScoreModel(net, VESDE(0.01, SIGMA_MAX), sigma_data=parent.sigma_data)
    extra = {k: parent.config[k] for k in ("training", "init_from") if k in parent.config}
    save_score_model(model, args.out, **extra, initialised_from={
        "checkpoint": args.parent, "dropped": "attention", "sde": "VESDE(0.01, 80) instead of the parent's"})
    print(f"wrote {args.out}: {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M params from {args.parent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
