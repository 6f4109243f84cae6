"""A nowcaster written as PyTorch users write them, with nothing of dpedge in it: the input
frames stacked as channels, an encoder that halves the resolution twice, residual blocks
at a quarter of it, a decoder that upsamples back, a head that gives every forecast frame
at once. dpedge traces it and prunes it as it is:

    dpedge train --backbone examples/plain_nowcaster.py:Nowcaster --arch hidden=32 --dataset nycbike --data sample --out runs/plain

The data's shape comes in as the keyword arguments the constructor names (frames_in,
frames_out, channels; height and width where it wants them); the others need defaults,
which --arch KEY=VALUE sets. Grids that are not a multiple of 4 (NYC bike's 10×20) are
padded for it and the forecast cropped back."""

import torch
from torch import nn
from torch.nn import functional as F


def conv_bn(inputs: int, outputs: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, stride, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU()
    )


class ResidualBlock(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(hidden, hidden, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return x + self.bn2(self.conv2(y))


class Nowcaster(nn.Module):
    WIDTHS = {"hidden": 4}  # optional: what `dpedge bench pareto` scales for its static networks of other widths

    def __init__(self, frames_in: int, frames_out: int, channels: int, hidden: int = 32, blocks: int = 2) -> None:
        super().__init__()
        self.frames_out, self.channels = frames_out, channels
        self.encoder = nn.Sequential(
            conv_bn(frames_in * channels, hidden), conv_bn(hidden, hidden, stride=2), conv_bn(hidden, hidden, stride=2)
        )
        self.blocks = nn.Sequential(*[ResidualBlock(hidden) for _ in range(blocks)])
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2), conv_bn(hidden, hidden), nn.Upsample(scale_factor=2), conv_bn(hidden, hidden)
        )
        self.head = nn.Conv2d(hidden, frames_out * channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, channels, height, width = x.shape
        z = self.encoder(x.reshape(batch, frames * channels, height, width))
        z = self.decoder(self.blocks(z))
        return self.head(z).reshape(batch, self.frames_out, self.channels, height, width)
