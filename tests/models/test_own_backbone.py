"""A backbone of the user's own: registered through the public API (the built-in ones go
the same way), or named on the command line as PATH.py:Class, whose file dpedge imports.
A model.pt records the backbone's name only, never a file to run: the commands that load
it take the same --backbone again, or refuse in one line."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from torch import nn

import dynaprune_edge
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.layers import GatedConv2d
from dynaprune_edge.models import BACKBONES, Backbone, resolve_backbone
from dynaprune_edge.models.convlstm import ConvLSTM
from dynaprune_edge.models.simvp import SimVP
from dynaprune_edge.models.vit import PatchTransformer

EXAMPLE = Path(__file__).parents[2] / "examples" / "residual_backbone.py"


def last_line(result) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_the_built_in_backbones_are_registered_through_the_public_api():
    assert dynaprune_edge.register_backbone(SimVP) is SimVP, "registering a registered class again changes nothing"
    assert [BACKBONES.get(name) for name in ("simvp", "convlstm", "vit")] == [SimVP, ConvLSTM, PatchTransformer]


@dataclasses.dataclass(frozen=True)
class TinyOptions:
    channels: int = 8


class Tiny(Backbone):
    name = "tiny-test"
    Options = TinyOptions

    def __init__(self, shape, options, group_size, one_width=False):
        super().__init__(shape, options, group_size, one_width)
        self.conv = GatedConv2d(
            shape.frames_in * shape.channels,
            shape.frames_out * shape.channels,
            1,
            gate=None,
            input_gate=None,
            group_size=group_size,
            norm=False,
            activation=False,
        )

    def program(self, ops, x):
        return ops.forecast(
            ops.unstack_frames(ops.apply(self.conv, ops.stack_frames(ops.per_frame(x))), self.shape.frames_out)
        )


def variant(**changes) -> type:
    return type("Variant", (Tiny,), changes)


@pytest.mark.parametrize(
    "entry, message",
    [
        (variant(), "backbone name 'tiny-test' is taken"),
        (variant(name="Tiny Net"), "name must be lower-case letters, digits"),
        (variant(name="simvp"), "backbone name 'simvp' is taken"),
        (
            variant(name="tiny2", Options=dataclasses.make_dataclass("NoDefault", [("channels", int)])),
            "every field has a default",
        ),
        (variant(name="tiny3", Options=dict), "Options must be a dataclass"),
        (type("Abstract", (Backbone,), {"name": "tiny4", "Options": TinyOptions}), "does not define program"),
        (nn.Conv2d, "is not a subclass of dynaprune_edge.models.Backbone"),
    ],
)
def test_a_backbone_the_registry_cannot_take_is_refused_in_one_line(entry, message):
    with BACKBONES.scope():
        dynaprune_edge.register_backbone(Tiny)
        names = BACKBONES.names()
        with pytest.raises(ConfigError, match=re.escape(message)) as refused:
            dynaprune_edge.register_backbone(entry)
        assert "\n" not in str(refused.value) and BACKBONES.names() == names
    assert "tiny-test" not in BACKBONES.names(), "a scope forgets what it registered"


@pytest.mark.parametrize(
    "source, spec, message",
    [
        ("x = (\n", "{file}:Net", "net.py:1: '(' was never closed"),
        ("import math\n", "{file}:Net", "net.py defines no Net (it defines: no classes)"),
        ("class Other:\n    pass\n", "{file}:Net", "net.py defines no Net (it defines: Other)"),
        ("raise RuntimeError('no GPU here')\n", "{file}:Net", "running net.py raised RuntimeError: no GPU here"),
        (
            "from torch import nn\nclass Net(nn.Module):\n    def __init__(self, channels, depth):\n        super().__init__()\n",
            "{file}:Net",
            "Net.__init__: argument 'depth' needs a whole-number default",
        ),
        ("class Net:\n    name = 'net'\n", "{file}:Net", "Net is not a subclass of dynaprune_edge.models.Backbone"),
        (None, "{folder}/missing.py:Net", "no such file"),
        (None, "{file}:", "expected a backbone name, PATH.py:Class or package.module:Class"),
        (None, "no_such_package_dpedge.models:Net", "no module named 'no_such_package_dpedge'"),
        (
            None,
            "mystery",
            "unknown backbone 'mystery'; known: convlstm, simvp, vit (a backbone of your own: pass the file",
        ),
    ],
)
def test_a_backbone_file_that_cannot_be_used_is_one_line_naming_it_and_registers_nothing(
    tmp_path, source, spec, message
):
    file = tmp_path / "net.py"
    if source is not None:
        file.write_text(source)
    spec = spec.format(file=file, folder=tmp_path)
    with BACKBONES.scope():
        names = BACKBONES.names()
        with pytest.raises(ConfigError) as refused:
            resolve_backbone(spec)
        assert message in str(refused.value) and "\n" not in str(refused.value), str(refused.value)
        assert BACKBONES.names() == names


def test_a_backbone_file_is_run_once_however_often_it_is_named(tmp_path):
    file = tmp_path / "counted.py"
    file.write_text(EXAMPLE.read_text() + "\nRUNS = globals().get('RUNS', 0) + 1\n")
    with BACKBONES.scope():
        assert (
            resolve_backbone(f"{file}:ResidualCNN")
            == resolve_backbone(f"{tmp_path}/../{tmp_path.name}/counted.py:ResidualCNN")
            == "residual-cnn"
        )
        assert sys.modules[BACKBONES.get("residual-cnn").__module__].RUNS == 1


@pytest.mark.slow
def test_a_backbone_of_your_own_trains_exports_and_profiles_when_its_file_is_passed_again(dpedge, tmp_path):
    """The user's file next to their runs, as they would keep it: `dpedge train --backbone
    PATH.py:Class`, then export, info and profile given the same --backbone; without it,
    each model.pt reader refuses in one line that says what to pass."""
    file = tmp_path / "my_model.py"
    shutil.copy(EXAMPLE, file)
    spec, out = f"{file}:ResidualCNN", tmp_path / "run"
    trained = dpedge(
        "train",
        "--backbone",
        spec,
        "--arch",
        "channels=8",
        "--dataset",
        "nycbike",
        "--data",
        "sample",
        "--epochs",
        "1",
        "--budget",
        "0.5",
        "--group-size",
        "4",
        "--out",
        out,
    )
    assert trained.returncode == 0, trained.stderr
    assert b"my_model.py" not in (out / "model.pt").read_bytes(), "a model.pt names no file to run"
    refused = dpedge("export", out / "model.pt")
    assert refused.returncode == 1 and last_line(refused) == (
        f"error: {out / 'model.pt'} was trained with the backbone 'residual-cnn', which is not built in: pass the file that defines it, "
        "--backbone PATH.py:Class, as `dpedge train` was given it (a model.pt names no file to run)"
    )
    assert not (out / "model.onnx").exists()
    exported = dpedge("export", out / "model.pt", "--backbone", spec)
    assert exported.returncode == 0, exported.stderr
    assert "max abs error" in exported.stderr and (out / "model.onnx").is_file()
    info = dpedge("info", out / "model.pt", "--backbone", spec)
    assert info.returncode == 0 and '"backbone": "residual-cnn"' in info.stdout
    profiled = dpedge(
        "profile", out / "model.onnx", "--runs", "5", "--samples", "4", "--backbone", spec
    )  # its dense twin: from model.pt
    assert profiled.returncode == 0, profiled.stderr


def trained_and_exported(dpedge, spec: str, out, *options):
    """`dpedge train --backbone SPEC` on NYC bike's sample, one epoch at budget 0.5 with
    `options`, then `dpedge export` given the same --backbone: (the train run, the manifest),
    the export within 1e-4 of PyTorch in every branch."""
    common = ("--dataset", "nycbike", "--data", "sample", "--epochs", "1", "--budget", "0.5")
    trained = dpedge("train", "--backbone", spec, *common, *options, "--out", out)
    assert trained.returncode == 0, trained.stderr
    exported = dpedge("export", out / "model.pt", "--backbone", spec)
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((out / "model.dpedge.json").read_text())
    assert max(manifest["parity"]["max_abs_error_per_branch"].values()) <= 1e-4
    return trained, manifest


@pytest.mark.slow
def test_a_plain_pytorch_model_as_users_write_it_trains_width_routed_and_exports_with_parity(dpedge, tmp_path):
    """examples/plain_nowcaster.py has nothing of dpedge in it: an encoder-decoder traced
    on NYC bike's 10×20 grid (padded to its multiple of 4), its convolutions pruned but for
    those a residual sum or the forecast reads, and the export matches PyTorch."""
    spec, out = f"{EXAMPLE.with_name('plain_nowcaster.py')}:Nowcaster", tmp_path / "run"
    trained, manifest = trained_and_exported(dpedge, spec, out, "--arch", "hidden=16", "--arch", "blocks=2")
    assert "run-time budgets, one model" in trained.stdout
    assert manifest["backbone"] == "nowcaster" and manifest["mode"] == "widths"
    assert sorted(manifest["gate_groups"]) == [
        "blocks_0_conv1",
        "blocks_1_conv1",
        "decoder_1_0",
        "decoder_3_0",
        "encoder_0_0",
        "encoder_1_0",
    ]
    info = " ".join(dpedge("info", out / "model.pt", "--backbone", spec).stdout.split())
    assert '"layer": "encoder.2.0", "gate": null, "why not": "a residual sum reads it' in info
    assert '"layer": "head", "gate": null, "why not": "its channels are the forecast\'s"' in info


@pytest.mark.slow
@pytest.mark.parametrize("mode", [(), ("--no-slimmable", "--region-size", "4")], ids=["width-routed", "region masks"])
def test_a_convolutional_recurrent_model_trains_and_exports_with_parity(dpedge, tmp_path, mode):
    """examples/recurrent_nowcaster.py: a ConvGRU read frame by frame, then forecasting
    frame by frame from its own forecasts; its loops unroll, its cell keeps its width."""
    spec = f"{EXAMPLE.with_name('recurrent_nowcaster.py')}:RecurrentNowcaster"
    trained_and_exported(dpedge, spec, tmp_path / "run", "--arch", "hidden=8", *mode)


@pytest.mark.slow
def test_an_operation_dpedge_cannot_prune_is_refused_before_any_data_are_read(dpedge, tmp_path):
    """The data named do not exist: the refusal must come from the model's trace, before
    dpedge looks for them (the conversion runs first on a nominal grid)."""
    file = tmp_path / "attending.py"
    file.write_text(
        "from torch import nn\nfrom torch.nn import functional as F\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self, frames_in, frames_out, channels, hidden=8):\n        super().__init__()\n"
        "        self.stem = nn.Conv2d(frames_in * channels, hidden, 3, padding=1)\n\n"
        "    def forward(self, x):\n        b, t, c, h, w = x.shape\n        z = self.stem(x.reshape(b, t * c, h, w))\n"
        "        return F.scaled_dot_product_attention(z, z, z)\n"
    )
    refused = dpedge(
        "train",
        "--backbone",
        f"{file}:Net",
        "--dataset",
        "knmi",
        "--data",
        tmp_path / "no-such-radar.h5",
        "--epochs",
        "1",
        "--out",
        tmp_path / "run",
    )
    assert refused.returncode == 1
    assert last_line(refused).startswith(
        "error: Net: scaled_dot_product_attention is not supported for pruning yet; supported: "
    )
    assert not (tmp_path / "run").exists()


def test_the_help_says_a_backbone_file_is_run(dpedge):
    text = " ".join(dpedge("train", "--help").stdout.replace("│", " ").split())
    assert "this imports that file, which runs its code as any Python import does: pass only files you trust" in text
