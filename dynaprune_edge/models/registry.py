"""The backbone table: `@BACKBONES.register("name")` on a `Backbone` subclass."""

from dynaprune_edge.registry import Registry

BACKBONES = Registry("backbone")
