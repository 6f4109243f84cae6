"""A convolutional-recurrent nowcaster written as PyTorch users write them, with nothing of
dpedge in it: a per-frame encoder that halves the resolution, a ConvGRU cell that reads the
input frames one at a time, then forecasts frame by frame, each forecast frame fed back in
as the next step's input. dpedge traces it (the loops unroll) and prunes it as it is:

    dpedge train --backbone examples/recurrent_nowcaster.py:RecurrentNowcaster --arch hidden=16 --dataset nycbike --data sample --out runs/gru

The encoder's and decoder's inner convolutions are pruned; the cell's own convolutions keep
their width, since their outputs are split into gates and multiplied with the state
(`dpedge info` says so, layer by layer)."""

import torch
from torch import nn


class ConvGRUCell(nn.Module):
    def __init__(self, inputs: int, hidden: int, kernel: int = 3) -> None:
        super().__init__()
        self.gates = nn.Conv2d(inputs + hidden, 2 * hidden, kernel, padding=kernel // 2)
        self.candidate = nn.Conv2d(inputs + hidden, hidden, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        reset, update = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        candidate = torch.tanh(self.candidate(torch.cat([x, reset * h], dim=1)))
        return (1 - update) * h + update * candidate


class RecurrentNowcaster(nn.Module):
    WIDTHS = {"hidden": 4}  # optional: what `dpedge bench pareto` scales for its static networks of other widths

    def __init__(self, frames_in: int, frames_out: int, channels: int, hidden: int = 16) -> None:
        super().__init__()
        self.frames_in, self.frames_out, self.hidden = frames_in, frames_out, hidden
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.cell = ConvGRUCell(hidden, hidden)
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, _, height, width = x.shape
        state = torch.zeros(batch, self.hidden, height // 2, width // 2, device=x.device)
        for step in range(self.frames_in):
            state = self.cell(self.encoder(x[:, step]), state)
        forecast = [self.decoder(state)]
        while len(forecast) < self.frames_out:
            state = self.cell(self.encoder(forecast[-1]), state)
            forecast.append(self.decoder(state))
        return torch.stack(forecast, dim=1)
