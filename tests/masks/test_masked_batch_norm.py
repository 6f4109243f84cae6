"""BatchNorm statistics from kept outputs only: a sample's kept values must not depend on
what was skipped, in its own regions or in the rest of the batch."""

import torch

from dynaprune_edge.layers.conv import MaskedBatchNorm2d


def test_kept_outputs_ignore_skipped_positions_and_channels():
    torch.manual_seed(0)
    norm = MaskedBatchNorm2d(4).train()
    y = torch.randn(3, 4, 8, 8)
    kept = (torch.rand(3, 1, 8, 8) > 0.5).float() * (torch.rand(3, 4, 1, 1) > 0.3).float()
    garbage = y + 100 * torch.randn_like(y) * (1 - kept)
    first = norm(y, kept) * kept
    second = MaskedBatchNorm2d(4).train()(garbage, kept) * kept
    assert torch.allclose(first, second, atol=1e-5)


def test_all_kept_is_ordinary_batch_norm_and_running_stats_match():
    torch.manual_seed(0)
    masked, plain = MaskedBatchNorm2d(4).train(), torch.nn.BatchNorm2d(4).train()
    y = torch.randn(5, 4, 6, 6) * 3 + 1
    assert torch.allclose(masked(y, torch.ones(5, 4, 1, 1)), plain(y), atol=1e-5)
    assert torch.allclose(masked.running_mean, plain.running_mean, atol=1e-6)
    assert torch.allclose(masked.running_var, plain.running_var, atol=1e-5)
    masked.eval(), plain.eval()
    assert torch.allclose(masked(y), plain(y), atol=1e-5)
