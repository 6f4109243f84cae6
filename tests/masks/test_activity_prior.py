"""The mask generator's activity prior: regions whose input frames do not change (where the
persistence a skipped region outputs is exact) are the ones a budget skips first, in
PyTorch and in the exported router alike."""

from __future__ import annotations

import onnxruntime as ort
import torch

from dynaprune_edge.export.network import router_graph
from dynaprune_edge.masks import MaskMode, PruningConfig
from dynaprune_edge.models import ModelConfig, build_model
from tests.models.test_backbones import SHAPE

SIZE = PruningConfig().region_size


def frames_with_still_regions(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames (B, T, C, H, W), still (B, h, w) bool): noise frames in which about half of
    each sample's regions repeat their first frame at every step."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(batch, SHAPE.frames_in, SHAPE.channels, SHAPE.height, SHAPE.width, generator=generator)
    still = torch.rand(batch, SHAPE.height // SIZE, SHAPE.width // SIZE, generator=generator) < 0.5
    pixels = still.repeat_interleave(SIZE, 1).repeat_interleave(SIZE, 2)[:, None, None]
    return torch.where(pixels, x[:, :1].expand_as(x), x), still


def test_still_regions_are_skipped_before_changing_ones_in_torch_and_in_the_exported_router():
    torch.manual_seed(0)
    model = build_model(ModelConfig("simvp", SHAPE, {}, PruningConfig(budget=0.5)))
    x, still = frames_with_still_regions(8)
    with torch.no_grad():  # a generator as training starts: its learned term is the same for every region
        model.eval()
        model.calibrate([x])
        kept = model(x, MaskMode(hard=True)).masks.region_mask[:, 0] > 0
    assert kept.any() and not kept.all(), "the budget skips some regions and keeps some"
    for sample in range(len(x)):
        if (kept[sample] & still[sample]).any():
            assert kept[sample][~still[sample]].all(), f"sample {sample} kept a still region and skipped a changing one"
    assert (kept & ~still).sum() > (kept & still).sum()

    session = ort.InferenceSession(
        router_graph(model, "sliced").SerializeToString(), providers=["CPUExecutionProvider"]
    )
    counts = [
        int(session.run(["kept_regions"], {session.get_inputs()[0].name: x[[i]].numpy()})[0]) for i in range(len(x))
    ]
    assert counts == kept.sum(dim=(1, 2)).tolist()


def test_without_the_prior_still_and_changing_regions_score_alike():
    torch.manual_seed(0)
    model = build_model(ModelConfig("simvp", SHAPE, {}, PruningConfig(budget=0.5, activity_weight=0.0)))
    x, _ = frames_with_still_regions(2)
    with torch.no_grad():
        logits = model.eval().generator(x).logits
    assert torch.unique(logits).numel() == 1, "an untrained generator without the prior cannot tell them apart"
