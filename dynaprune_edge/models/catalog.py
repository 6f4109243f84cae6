"""The backbones dpedge can build, by name: the built-in ones and a user's own.

`register_backbone` is the one way in, for the built-in SimVP, ConvLSTM and ViT as for
a user's class (`dynaprune_edge.register_backbone`, usable as a decorator). `--backbone`
takes a registered name, or `PATH.py:Class` / `package.module:Class`: the file or module is
imported (which runs its code, as any Python import does) and the class registered: a
Backbone as it is, a plain torch.nn.Module as the backbone of its trace (models/traced.py).
A checkpoint records only the backbone's name, never a file to run: a model of a user's
backbone is loaded again by passing the same `--backbone PATH.py:Class`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path

from torch import nn

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.models.base import Backbone
from dynaprune_edge.registry import Registry

BACKBONES: Registry[type[Backbone]] = Registry(
    "backbone", [], hint="a backbone of your own: pass the file that defines it, --backbone PATH.py:Class"
)
"""Every backbone, by name (`register_backbone` fills it). The tests parametrize over the
built-in ones; the exporter needs nothing more than an entry here."""
NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
"""A backbone's name: what model.pt records and `--backbone` accepts."""


def register_backbone(backbone: type[Backbone]) -> type[Backbone]:
    """Register `backbone` under its `name` (returns it, so it decorates a class): a
    subclass of dynaprune_edge.models.Backbone with a lower-case `name`, an `Options`
    dataclass whose every field has a default, and a `program`. Registering the same
    class again does nothing; another class under a taken name is a ConfigError."""
    where = getattr(backbone, "__qualname__", repr(backbone))
    if not (inspect.isclass(backbone) and issubclass(backbone, Backbone)):
        raise ConfigError(f"{where} is not a subclass of dynaprune_edge.models.Backbone")
    name = getattr(backbone, "name", None)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(
            f"{where}.name must be lower-case letters, digits, '-' or '_' (what model.pt records), got {name!r}"
        )
    options = getattr(backbone, "Options", None)
    if not dataclasses.is_dataclass(options) or any(
        f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        for f in dataclasses.fields(options)
    ):
        raise ConfigError(
            f"{where}.Options must be a dataclass whose every field has a default (the sizes --arch overrides)"
        )
    if inspect.isabstract(backbone):
        missing = ", ".join(sorted(backbone.__abstractmethods__))
        raise ConfigError(f"{where} does not define {missing}: a backbone's forward is its program(ops, x)")
    BACKBONES.register(backbone)
    return backbone


def resolve_backbone(spec: str) -> str:
    """The registered name `spec` stands for: a name as it is, or `PATH.py:Class` /
    `package.module:Class`, imported (running its code) and registered."""
    if ":" not in spec:
        BACKBONES.get(spec)  # an unknown name says which exist
        return spec
    source, _, class_name = spec.rpartition(":")
    if not source or not class_name.isidentifier():
        raise ConfigError(f"--backbone {spec}: expected a backbone name, PATH.py:Class or package.module:Class")
    module = import_file(spec, Path(source)) if source.endswith(".py") or "/" in source else import_module(spec, source)
    found = getattr(module, class_name, None)
    if found is None:
        defined = sorted(n for n, v in vars(module).items() if inspect.isclass(v) and v.__module__ == module.__name__)
        raise ConfigError(
            f"--backbone {spec}: {source} defines no {class_name} (it defines: {', '.join(defined) or 'no classes'})"
        )
    try:
        if inspect.isclass(found) and issubclass(found, nn.Module) and not issubclass(found, Backbone):
            from dynaprune_edge.models.traced import converted

            found = converted(found)  # traced when the model is built, with the data's shape
        return register_backbone(found).name
    except ConfigError as error:
        raise ConfigError(f"--backbone {spec}: {error}") from None


def import_file(spec: str, path: Path):
    """The module of the Python file `path`, run once per process (a second `--backbone`
    naming the same file gets the same classes)."""
    if not path.is_file():
        raise ConfigError(f"--backbone {spec}: no such file {path}")
    resolved = path.resolve()
    name = f"dpedge_backbone_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}_{hashlib.sha256(str(resolved).encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # before running it: dataclasses look their module up there
    try:
        loader_spec.loader.exec_module(module)
    except SyntaxError as error:
        del sys.modules[name]
        raise ConfigError(f"--backbone {spec}: {path.name}:{error.lineno}: {error.msg}") from None
    except Exception as error:  # noqa: BLE001 (the user's code: whatever it raises is one line)
        del sys.modules[name]
        raise ConfigError(f"--backbone {spec}: running {path.name} raised {type(error).__name__}: {error}") from None
    return module


def import_module(spec: str, module_path: str):
    try:
        return importlib.import_module(module_path)
    except ModuleNotFoundError as error:
        raise ConfigError(f"--backbone {spec}: no module named {error.name!r} (a file: PATH.py:Class)") from None
    except SyntaxError as error:
        raise ConfigError(
            f"--backbone {spec}: {Path(error.filename or module_path).name}:{error.lineno}: {error.msg}"
        ) from None
    except Exception as error:  # noqa: BLE001 (the user's code: whatever it raises is one line)
        raise ConfigError(
            f"--backbone {spec}: importing {module_path} raised {type(error).__name__}: {error}"
        ) from None
