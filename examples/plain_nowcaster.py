"""A nowcaster written as PyTorch users write them, with nothing of dpedge in it: the input
frames stacked as channels, a stem, residual blocks, a head that gives every forecast frame
at once. dpedge traces it and prunes it as it is:

    dpedge train --backbone examples/plain_nowcaster.py:Nowcaster --arch hidden=32 --dataset nycbike --data sample --out runs/plain

The data's shape comes in as the keyword arguments the constructor names (frames_in,
frames_out, channels; height and width where it wants them); the others need defaults,
which --arch KEY=VALUE sets."""

import torch
from torch import nn
from torch.nn import functional as F


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
    def __init__(self, frames_in: int, frames_out: int, channels: int, hidden: int = 32, blocks: int = 3) -> None:
        super().__init__()
        self.frames_out, self.channels = frames_out, channels
        self.stem = nn.Conv2d(frames_in * channels, hidden, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(hidden)
        self.blocks = nn.Sequential(*[ResidualBlock(hidden) for _ in range(blocks)])
        self.head = nn.Conv2d(hidden, frames_out * channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, channels, height, width = x.shape
        z = F.relu(self.stem_bn(self.stem(x.reshape(batch, frames * channels, height, width))))
        z = self.blocks(z)
        return self.head(z).reshape(batch, self.frames_out, self.channels, height, width)
