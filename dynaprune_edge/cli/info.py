"""`dpedge info`."""

from __future__ import annotations

import json

from dynaprune_edge.cli.options import ModelBackbone, TrainedModel, register_own_backbone
from dynaprune_edge.cli.show import console, show_metrics
from dynaprune_edge.errors import CheckpointError


def info(model: TrainedModel, backbone: ModelBackbone = None) -> None:
    """Show how a model was built and trained, and its validation metrics."""
    from dynaprune_edge.training import load_model

    register_own_backbone(backbone)
    trained = load_model(model)
    config = trained.model_config.to_dict()
    if config["pruning"].get("cost_table"):  # hundreds of numbers: say what it is instead
        table = config["pruning"]["cost_table"]
        timed = (
            f"{len(table['branches']['level_ms']) + 1} branches"
            if table.get("branches")
            else f"{len(table['layers'])} layers"
        )
        config["pruning"]["cost_table"] = f"{trained.model.cost_model.describe()}, {timed}"
    console.print_json(
        json.dumps(
            {
                "model": config,
                "layers": trained.model.backbone.prunable_layers(),
                "data": trained.data_config.to_dict(),
                "normalizer": trained.normalizer.to_dict(),
            }
        )
    )
    network = trained.model
    rows, columns = network.padding
    if rows or columns:
        shape, padded = network.shape, network.backbone.shape
        console.print(
            f"grid {shape.height}×{shape.width} padded to {padded.height}×{padded.width} inside the model "
            f"({rows} rows below, {columns} columns right, for "
            + (f"its {network.region_size}-pixel regions and " if network.pruning.enabled else "")
            + f"the {trained.model_config.backbone} strides): padding is kept out of the loss, the metrics and the "
            "forecasts, and regions of padding alone are never computed"
        )
    if trained.metrics:
        try:
            show_metrics(trained.metrics)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise CheckpointError(
                f"{model}: damaged dpedge model (its metrics: {type(error).__name__}: {error})"
            ) from None
