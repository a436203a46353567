"""InversionNet (Wu & Lin, "InversionNet: An efficient and accurate data-driven full-waveform inversion",
IEEE TCI 2019), the OpenFWI baseline, written from the paper's layer plan.

Encoder (input (B, S, T, R), conv-BN-LeakyReLU(0.2) blocks):
    conv1   7x1, stride (2,1), 32            T/2
    conv2   3x1 s(2,1) 64,  3x1 64           T/4
    conv3   3x1 s(2,1) 64,  3x1 64           T/8
    conv4   3x1 s(2,1) 128, 3x1 128          T/16
    conv5   3x3 s2 128, 3x3 128              (time, receiver) / 2
    conv6   3x3 s2 256, 3x3 256
    conv7   3x3 s2 256, 3x3 256
    conv8   kernel = the whole remaining map, 512 -> 1x1 latent
Decoder:
    deconv1 5x5 transposed, 512 -> 5x5, then 3x3 conv 512
    deconv2..5  4x4 transposed stride 2 (256, 128, 64, 32), each followed by a 3x3 conv -> 80x80
    center crop to the grid, 3x3 conv -> 1, BN, tanh.

For the OpenFWI geometry (5 shots, 1000 samples, 70 receivers -> 70x70) this is exactly the paper's network:
the encoder reaches 8x9 before conv8 (kernel 8x9) and the decoder 80x80 before the crop.

Other geometries: the encoder map before conv8 is average-pooled to at most 8x9 (so the latent conv stays the
paper's size for large surveys, and shrinks for small ones); the decoder's first transposed conv has kernel
(ceil(nz/2^k), ceil(nx/2^k)) with k = max(4, ceil(log2(max(nz, nx)/5))) stride-2 stages (extra stages keep 32
channels), then a center crop to (nz, nx).

A salt-mask head (1x1 conv on the last 32-channel decoder feature) gives the same output dict as the U-Net.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fwi.models.layers import center_crop


def conv_block(cin: int, cout: int, kernel=3, stride=1, padding=1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout),
                         nn.LeakyReLU(0.2, inplace=True))


def deconv_block(cin: int, cout: int, kernel, stride=2, padding=0) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout),
                         nn.LeakyReLU(0.2, inplace=True))


def _conv_out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


def encoder_map_size(nt: int, nrec: int) -> tuple[int, int]:
    """(time, receiver) size of the encoder map entering the latent conv (before any pooling)."""
    t, r = _conv_out(nt, 7, 2, 3), nrec
    for _ in range(3):
        t = _conv_out(t, 3, 2, 1)
    for _ in range(3):
        t, r = _conv_out(t, 3, 2, 1), _conv_out(r, 3, 2, 1)
    return t, r


def decoder_plan(grid: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    """(number of stride-2 stages, first transposed-conv kernel) for a grid; (4, (5, 5)) for 70x70."""
    n_up = max(4, math.ceil(math.log2(max(grid) / 5)))
    first = (math.ceil(grid[0] / 2 ** n_up), math.ceil(grid[1] / 2 ** n_up))
    return n_up, first


class InversionNet(nn.Module):
    """InversionNet: gathers (B, S, T, R) -> {"velocity": (B,1,nz,nx) tanh, "salt_logits": (B,1,nz,nx)}."""

    LATENT_MAX = (8, 9)  # the paper's map size before the latent conv (1000 samples, 70 receivers)

    def __init__(self, in_shots: int = 5, nt: int = 1000, nrec: int = 70, grid: tuple[int, int] = (70, 70),
                 dims: tuple[int, int, int, int, int] = (32, 64, 128, 256, 512)):
        super().__init__()
        d1, d2, d3, d4, d5 = dims
        self.grid = (int(grid[0]), int(grid[1]))
        self.encoder = nn.Sequential(
            conv_block(in_shots, d1, (7, 1), (2, 1), (3, 0)),
            conv_block(d1, d2, (3, 1), (2, 1), (1, 0)), conv_block(d2, d2, (3, 1), 1, (1, 0)),
            conv_block(d2, d2, (3, 1), (2, 1), (1, 0)), conv_block(d2, d2, (3, 1), 1, (1, 0)),
            conv_block(d2, d3, (3, 1), (2, 1), (1, 0)), conv_block(d3, d3, (3, 1), 1, (1, 0)),
            conv_block(d3, d3, 3, 2), conv_block(d3, d3),
            conv_block(d3, d4, 3, 2), conv_block(d4, d4),
            conv_block(d4, d4, 3, 2), conv_block(d4, d4),
        )
        h, w = encoder_map_size(nt, nrec)
        self.latent_size = (min(h, self.LATENT_MAX[0]), min(w, self.LATENT_MAX[1]))
        self.latent = conv_block(d4, d5, self.latent_size, 1, 0)

        n_up, first = decoder_plan(self.grid)
        widths = [d5, d4, d3, d2, d1] + [d1] * (n_up - 4)
        layers: list[nn.Module] = [deconv_block(d5, d5, first, 1, 0), conv_block(d5, d5)]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [deconv_block(cin, cout, 4, 2, 1), conv_block(cout, cout)]
        self.decoder = nn.Sequential(*layers)
        self.velocity_head = nn.Sequential(nn.Conv2d(d1, 1, 3, 1, 1), nn.BatchNorm2d(1), nn.Tanh())
        self.salt_head = nn.Conv2d(d1, 1, 1)

    def forward(self, gathers: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.encoder(gathers)
        if tuple(x.shape[-2:]) != self.latent_size:
            x = F.adaptive_avg_pool2d(x, self.latent_size)
        x = center_crop(self.decoder(self.latent(x)), self.grid)
        return {"velocity": self.velocity_head(x), "salt_logits": self.salt_head(x)}
