"""Bad data and bad options: one-line errors that name the file and the problem."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from dynaprune_edge.data import SAMPLE, DataConfig, load_dataset
from dynaprune_edge.data.sources import SAMPLES_DIR
from dynaprune_edge.errors import ConfigError, DataError

KNMI_SAMPLE = SAMPLES_DIR / "knmi_radar_2010-08-26"


def _fails(config: DataConfig, *fragments: str, error=DataError) -> str:
    with pytest.raises(error) as caught:
        load_dataset(config)
    message = str(caught.value)
    assert "\n" not in message, "errors are printed as one line"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def _weatherbench(path, **options) -> DataConfig:
    return DataConfig(name="weatherbench", path=str(path), size=16, **options)


@pytest.mark.parametrize("name", ["taxibj", "weatherbench", "sevir", "knmi"])
def test_missing_path(tmp_path, name):
    _fails(DataConfig(name=name, path=str(tmp_path / "nowhere")), str(tmp_path / "nowhere"), "no such file")


def test_folder_or_glob_without_matching_files(tmp_path):
    (tmp_path / "notes.txt").write_text("not data")
    _fails(_weatherbench(tmp_path), str(tmp_path), "no .nc files")
    _fails(DataConfig(name="knmi", path=str(tmp_path / "*.h5")), "*.h5", "no file matches")


def test_nan_values_are_rejected_with_their_count(tmp_path, write_t2m):
    values = np.full((60, 16, 16), 280.0, dtype=np.float32)
    values[10, :2, :3] = np.nan
    values[11, 0, 0] = np.inf
    path = write_t2m(tmp_path / "holes.nc", values)
    _fails(_weatherbench(path), str(path), "7 NaN or infinite values")


def test_missing_variable_lists_what_exists(tmp_path, write_t2m):
    path = write_t2m(tmp_path / "z500.nc", np.zeros((60, 16, 16)), variable="z")
    _fails(_weatherbench(path), str(path), "no variable 't2m'", "z")


def test_wrong_dimensions(tmp_path, write_t2m):
    path = write_t2m(tmp_path / "profile.nc", np.zeros((60, 16)), dims=("time", "lat"))
    _fails(_weatherbench(path), str(path), "dims ('time', 'lat')", "expected (time, lat, lon)")


def test_too_short_series_says_how_many_frames_and_what_to_do(tmp_path, write_t2m):
    path = write_t2m(tmp_path / "short.nc", np.full((30, 16, 16), 280.0))
    message = _fails(_weatherbench(path), str(path), "a window needs 24", "smaller frames_in/frames_out")
    assert "30 frames" in message


def test_gap_or_duplicate_in_time(tmp_path, write_t2m):
    hours = np.concatenate([np.arange(20), np.arange(23, 63)])
    gap = write_t2m(tmp_path / "gap.nc", np.full((60, 16, 16), 280.0), hours=hours)
    _fails(_weatherbench(gap, frames_in=2, frames_out=2), "gap.nc step 19 → gap.nc step 20", "1:00:00", "4:00:00")
    folder = tmp_path / "twice"
    folder.mkdir()
    write_t2m(folder / "a.nc", np.full((30, 16, 16), 280.0))
    write_t2m(folder / "b.nc", np.full((30, 16, 16), 280.0))
    _fails(_weatherbench(folder), "have the same time")


def test_files_are_concatenated_in_time_order(tmp_path, write_t2m):
    """Names sort the wrong way round; the loader must follow the time coordinate."""
    folder = tmp_path / "years"
    folder.mkdir()
    ramp = np.arange(60, dtype=np.float32)[:, None, None] + np.zeros((60, 16, 16), np.float32)
    write_t2m(folder / "a_late.nc", 300 + ramp[30:], hours=np.arange(30, 60))
    write_t2m(folder / "b_early.nc", 300 + ramp[:30], hours=np.arange(30))
    data = load_dataset(_weatherbench(folder, frames_in=2, frames_out=2))
    x, y = data.train[0]
    physical = data.normalizer.denormalize(x)[:, 0, 0, 0].tolist() + data.normalizer.denormalize(y)[:, 0, 0, 0].tolist()
    assert physical == pytest.approx([300, 301, 302, 303], abs=1e-3)


@pytest.mark.parametrize(
    ("name", "filename"),
    [("weatherbench", "broken.nc"), ("knmi", "RAD_201008260000.h5"), ("sevir", "broken.h5"), ("taxibj", "dataset.npz")],
)
def test_corrupt_files(tmp_path, name, filename):
    path = tmp_path / filename
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8)
    _fails(DataConfig(name=name, path=str(path)), str(path), "not a readable")


def test_knmi_frames_must_be_consecutive(tmp_path):
    folder = tmp_path / "knmi"
    folder.mkdir()
    files = sorted(KNMI_SAMPLE.glob("*.h5"))[:30]
    for path in files[:12] + files[14:]:
        (folder / path.name).symlink_to(path)
    _fails(DataConfig(name="knmi", path=str(folder)), "RAD_NL25_RAP_5min_201008260055.h5", "201008260110.h5", "0:15:00")


def test_knmi_bad_layouts(tmp_path, write_knmi):
    frames = np.zeros((14, 16, 16), dtype=np.uint16)
    paths = write_knmi(tmp_path / "formula", frames, formula="GEO=log(PV)")
    _fails(DataConfig(name="knmi", path=str(tmp_path / "formula")), str(paths[0]), "cannot parse calibration formula")
    paths = write_knmi(tmp_path / "noimage", frames)
    with h5py.File(paths[3], "a") as handle:
        del handle["image1/image_data"]
    _fails(DataConfig(name="knmi", path=str(tmp_path / "noimage")), str(paths[3]), "no dataset 'image1/image_data'")


def test_sevir_needs_a_4d_vil(tmp_path):
    path = tmp_path / "sevir.h5"
    with h5py.File(path, "w") as handle:
        handle["vil"] = np.zeros((3, 64, 64), dtype=np.uint8)
    _fails(DataConfig(name="sevir", path=str(path)), str(path), "expected (events, H, W, frames)")
    with h5py.File(path, "w") as handle:
        handle["ir069"] = np.zeros((3, 64, 64, 49), dtype=np.uint8)
    _fails(DataConfig(name="sevir", path=str(path)), "no dataset 'vil'", "ir069")


def test_taxibj_layout_is_checked(tmp_path):
    path = tmp_path / "dataset.npz"
    np.savez(path, X_train=np.zeros((20, 4, 2, 32, 32)), Y_train=np.zeros((20, 4, 2, 32, 32)))
    _fails(DataConfig(name="taxibj", path=str(path)), str(path), "missing array(s) X_test, Y_test")
    windows = np.zeros((20, 3, 2, 32, 32))
    np.savez(path, X_train=windows, Y_train=windows, X_test=windows, Y_test=windows)
    _fails(DataConfig(name="taxibj", path=str(path)), "(N, 4, 2, H, W)", "(20, 3, 2, 32, 32)")


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"frames_in": 0}, "--frames-in must be"),
        ({"frames_out": -2}, "--frames-out must be"),
        ({"size": 0}, "--size must be a whole number"),
    ],
)
def test_impossible_options(options, fragment):
    _fails(DataConfig(name="knmi", **options), fragment, error=ConfigError)


def test_size_larger_than_the_data_is_refused():
    _fails(DataConfig(name="weatherbench", path=SAMPLE, size=64), "does not upsample", error=ConfigError)


def test_taxibj_arrays_of_text_are_refused(tmp_path):
    path = tmp_path / "dataset.npz"
    windows = np.full((20, 4, 2, 32, 32), "0.5")  # numbers as text: numpy would have cast them
    np.savez(path, X_train=windows, Y_train=windows, X_test=windows, Y_test=windows)
    _fails(DataConfig(name="taxibj", path=str(path)), str(path), "the X arrays hold <U3, not numbers")


def test_knmi_codes_and_images_of_the_wrong_kind_are_refused(tmp_path, write_knmi):
    frames = np.zeros((14, 16, 16), dtype=np.uint16)
    paths = write_knmi(tmp_path / "codes", frames)
    with h5py.File(paths[2], "a") as handle:
        handle["image1/calibration"].attrs["calibration_missing_data"] = np.bytes_("none")
    _fails(
        DataConfig(name="knmi", path=str(tmp_path / "codes")),
        str(paths[2]),
        "calibration_missing_data must be whole numbers",
    )
    paths = write_knmi(tmp_path / "group", frames)
    with h5py.File(paths[1], "a") as handle:
        del handle["image1/image_data"]
        handle.create_group("image1/image_data")
    _fails(
        DataConfig(name="knmi", path=str(tmp_path / "group")),
        str(paths[1]),
        "image1/image_data is a group, not an array",
    )


def _points_elsewhere(path, kind, secret):
    """An HDF5 file whose `image1/image_data` takes its bytes from `secret` (another file)."""
    with h5py.File(path, "a") as handle:
        del handle["image1/image_data"]
        if kind == "external storage":
            handle.create_dataset("image1/image_data", (16, 16), dtype=np.uint16, external=[(str(secret), 0, 512)])
        elif kind == "external link":
            handle["image1/image_data"] = h5py.ExternalLink(str(secret), "/data")
        else:
            layout = h5py.VirtualLayout((16, 16), dtype=np.uint16)
            layout[:] = h5py.VirtualSource(str(secret), "data", shape=(16, 16))
            handle.create_virtual_dataset("image1/image_data", layout)


@pytest.mark.parametrize("kind", ["external storage", "external link", "virtual dataset"])
def test_hdf5_that_takes_its_bytes_from_another_file_is_refused(tmp_path, write_knmi, kind):
    """A crafted radar file must not pull another file's bytes (a key, a password file)
    into the training frames, which a trained model and its metrics would then reflect."""
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as handle:
        handle["data"] = np.full((16, 16), 7, np.uint16)
    if kind == "external storage":
        secret = tmp_path / "secret.bin"
        secret.write_bytes(bytes(range(256)) * 2)
    paths = write_knmi(tmp_path / "radar", np.zeros((14, 16, 16), dtype=np.uint16))
    _points_elsewhere(paths[5], kind, secret)
    _fails(
        DataConfig(name="knmi", path=str(tmp_path / "radar")),
        str(paths[5]),
        "image1/image_data",
        "self-contained files only",
    )


def test_netcdf4_with_external_storage_is_refused(tmp_path, write_t2m):
    path = write_t2m(tmp_path / "t2m.nc", np.full((40, 8, 8), 280.0))
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(40 * 64 * 4))
    with h5py.File(path, "a") as handle:  # netCDF-4 is HDF5: the same storage can be put in
        del handle["t2m"]
        handle.create_dataset("t2m", (40, 8, 8), dtype=np.float32, external=[(str(secret), 0, 40 * 64 * 4)])
    _fails(_weatherbench(path), str(path), "t2m keeps its data in other files")


def test_a_recursive_pattern_is_not_followed_from_a_file_dpedge_was_handed(tmp_path):
    config = DataConfig(name="taxibj", path=str(tmp_path / "**" / "*.npz"))
    with pytest.raises(
        DataError, match=r"model.pt records the data as the recursive pattern .*\*\*.*: pass the data with --data"
    ):
        load_dataset(config, recorded_in="model.pt")
    _fails(config, "no file matches this pattern")  # the user's own option: followed


def test_impossible_recorded_values():
    """What a model.pt or a manifest may hold in its data record."""
    _fails(DataConfig(name="taxibj", seed=-1), "--seed must be", error=ConfigError)
    for values, fragment in (
        ({"path": 7}, "the name and path must be text"),
        ({"name": ["x"]}, "must be text"),
        ({"size": 4.5}, "size must be a whole number"),
        ({"frames_in": True}, "frames_in must be a whole number"),
    ):
        with pytest.raises(ConfigError, match=fragment):
            DataConfig.from_dict({"name": "taxibj", **values})
