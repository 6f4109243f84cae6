"""An exported model to deploy: model.onnx of a model whose masks vary by sample, with
its model.pt beside it (the dense twin is exported from it when a command needs it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynaprune_edge.export.exporter import Exporter, ExportOptions


@pytest.fixture(scope="module")
def model(tmp_path_factory, varied_model) -> Path:
    folder = tmp_path_factory.mktemp("exported")
    Exporter(
        varied_model(folder, group_order="ordered"),
        ExportOptions(mode="sliced", tiles="none", levels=4),
        log=lambda _: None,
    ).run(folder / "model.onnx")
    return folder / "model.onnx"
