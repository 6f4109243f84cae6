"""dpedge (dynaprune-edge): per-sample pruned spatio-temporal forecasters, compiled for the edge.

`dynaprune_edge.register_backbone(cls)` (or `@register_backbone`) adds a backbone of your
own (docs/guides/own-model.md). It is looked up on first use, so that importing the package
stays torch-free: the runtime on a Jetson imports it without torch."""


def __getattr__(name: str):
    if name == "register_backbone":
        from dynaprune_edge.models.catalog import register_backbone

        return register_backbone
    raise AttributeError(f"module 'dynaprune_edge' has no attribute {name!r}")
