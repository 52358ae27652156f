"""The multitask 2D network: a U-Net with segmentation, centre-heatmap and projection heads.

A plain U-Net with BatchNorm stands in for the authors' Res2Net variant (method.md allows it): it is
fast on a CPU, and BatchNorm statistics can be re-estimated on a target cheaply (AdaBN).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelConfig:
    base: int = 16          # channels of the first level; doubles per level
    depth: int = 4          # number of down-sampling steps
    proj_dim: int = 32      # embedding size of the projection head (contrastive loss)
    downsample: int = 2     # the network sees images shrunk by this factor (speed; mitochondria are large)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown model settings {sorted(unknown)}")
        return cls(**known)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class MultiTaskUNet(nn.Module):
    """Input (B, 1, H, W) in [0, 1], H and W divisible by 2**depth.

    forward -> dict(seg=(B,1,H,W) logits, det=(B,1,H,W) non-negative heatmap,
                    proj=(B,P,H/4,W/4) embedding (H/2**(depth-1) when depth < 3), only when with_proj=True).
    """

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig()
        c = [self.config.base * 2**i for i in range(self.config.depth + 1)]
        self.enc = nn.ModuleList([_block(1, c[0])] + [_block(c[i], c[i + 1]) for i in range(self.config.depth)])
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(c[i + 1], c[i], 2, stride=2) for i in reversed(range(self.config.depth))]
        )
        self.dec = nn.ModuleList([_block(2 * c[i], c[i]) for i in reversed(range(self.config.depth))])
        self.seg_head = nn.Conv2d(c[0], 1, 1)
        self.det_head = nn.Sequential(nn.Conv2d(c[0], c[0], 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c[0], 1, 1))
        # Projection from the decoder level at 1/4 resolution (as the authors do), or the coarsest
        # decoder level of shallower networks.
        self.proj_level = min(2, self.config.depth - 1)
        pc = c[self.proj_level]
        self.proj_head = nn.Sequential(nn.Conv2d(pc, pc, 1), nn.ReLU(inplace=True),
                                       nn.Conv2d(pc, self.config.proj_dim, 1))

    @property
    def multiple(self) -> int:
        return 2**self.config.depth

    def forward(self, x: torch.Tensor, with_proj: bool = False) -> dict:
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        proj_feat = None
        for level, (up, dec) in zip(reversed(range(self.config.depth)), zip(self.up, self.dec)):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
            if level == self.proj_level:
                proj_feat = x
        out = {"seg": self.seg_head(x), "det": F.relu(self.det_head(x))}
        if with_proj:
            out["proj"] = self.proj_head(proj_feat)
        return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
