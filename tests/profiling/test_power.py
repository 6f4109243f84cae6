"""Power and energy per inference: tegrastats lines recorded on real Jetsons parsed exactly,
and `dpedge profile --power` end to end against a stand-in tegrastats that prints those
lines (this machine has no rail monitors), so the recording windows, the idle subtraction,
the report and every failure are exercised for real."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from dynaprune_edge.errors import ConfigError, DataError
from dynaprune_edge.export.exporter import Exporter, ExportOptions
from dynaprune_edge.profiling.power import JtopMeter, measure_power, parse_tegrastats

QUICK = ["--samples", "6", "--runs", "6", "--power-seconds", "0.6", "--idle-seconds", "0.4", "--power-interval", "50"]


@pytest.mark.parametrize(
    ("name", "rails", "total", "total_of"),
    [
        (
            "agx_orin_jetpack5_root.txt",
            {
                "VDD_GPU_SOC": (2390, 2390),
                "VDD_CPU_CV": (796, 796),
                "VIN_SYS_5V0": (3522, 3522),
                "VDDQ_VDD2_1V8AO": (301, 301),
            },
            7009,
            "sum of VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0+VDDQ_VDD2_1V8AO",
        ),
        (
            "agx_orin_jetpack7.txt",
            {"VDD_GPU_SOC": (5139, 5139), "VDD_CPU_CV": (3268, 3268), "VIN_SYS_5V0": (5500, 5500)},
            13907,
            "sum of VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0",
        ),
        (
            "orin_nx_jetpack6.txt",
            {"VDD_IN": (6120, 6120), "VDD_CPU_GPU_CV": (436, 436), "VDD_SOC": (2464, 2464)},
            6120,
            "VDD_IN",
        ),
        (
            "agx_thor_jetpack7.txt",
            {
                "VDD_GPU": (1962, 1962),
                "VDD_CPU_SOC_MSS": (5887, 5887),
                "VIN_SYS_5V0": (5635, 5635),
                "VIN": (19780, 19780),
            },
            19780,
            "VIN",
        ),
    ],
)
def test_recorded_tegrastats_lines_give_their_rails_and_the_module_total(name, rails, total, total_of, tegrastats_line):
    sample = parse_tegrastats(tegrastats_line(name))
    assert sample.rails == rails  # the unconnected NC channels and the temperatures (cpu@52.968C/52.968C) are not rails
    assert sample.total_mw == total and sample.total_of == total_of


def test_the_running_average_is_read_apart_from_the_instant_value(tegrastats_line):
    sample = parse_tegrastats(tegrastats_line("orin_nx_jetpack6.txt", 1))
    assert sample.rails["VDD_IN"] == (6090, 6105) and sample.rails["VDD_CPU_GPU_CV"] == (396, 416)
    assert sample.total_mw == 6090  # the instant value: the average runs since tegrastats started


def test_a_line_without_rails_says_that_agx_orin_prints_them_to_root_only(tegrastats_line):
    with pytest.raises(DataError, match="root"):
        parse_tegrastats(tegrastats_line("agx_orin_jetpack5_user.txt"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, varied_model) -> Path:
    folder = tmp_path_factory.mktemp("powered")
    checkpoint = varied_model(folder, group_order="ordered")
    for name, options in (
        ("model.onnx", ExportOptions(mode="sliced", tiles="none", levels=4)),
        ("model.dense.onnx", ExportOptions(dense=True)),
    ):
        Exporter(checkpoint, options, log=lambda _: None).run(folder / name)
    return folder / "model.onnx"


@pytest.mark.slow
def test_profile_measures_idle_then_each_model_alone_and_reports_energy_per_inference(
    dpedge, exported, tmp_path, fake_tegrastats, tegrastats_line
):
    idle, loaded = (
        tegrastats_line("agx_orin_jetpack5_root.txt"),
        tegrastats_line("agx_orin_jetpack7.txt"),
    )  # 7009 mW, 13907 mW
    fake = fake_tegrastats(tmp_path / "bin", [idle, loaded], stale=tegrastats_line("orin_nx_jetpack6.txt"))
    result = dpedge("profile", exported, *QUICK, "--power", "tegrastats", "--report", tmp_path / "report", path=(fake,))
    assert result.returncode == 0, result.stderr
    assert (fake / "starts").read_text() == "3", "one tegrastats per phase: idle, pruned, dense twin"
    power = json.loads((tmp_path / "report" / "report.json").read_text())["power"]
    assert power["meter"] == "tegrastats" and power["label"].startswith("MEASURED")
    assert power["idle"]["mean_mw"] == 7009 and set(power["idle"]["trace_mw"]) == {
        7009
    }  # the stale 6120 mW line is never counted
    for role in ("sparse", "dense"):
        phase = power[role]
        assert set(phase["trace_mw"]) == {13907} and phase["samples"] >= 2
        assert phase["runs"] >= 6 and phase["seconds"] >= 0.6
        assert phase["energy_mj"] == pytest.approx(13907 * phase["latency_ms_mean"] / 1000)
        assert phase["dynamic_energy_mj"] == pytest.approx((13907 - 7009) * phase["latency_ms_mean"] / 1000)
        assert phase["rails_mean_mw"] == {"VDD_GPU_SOC": 5139, "VDD_CPU_CV": 3268, "VIN_SYS_5V0": 5500}
    assert power["energy_ratio"] == pytest.approx(power["dense"]["energy_mj"] / power["sparse"]["energy_mj"])
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Power and energy: MEASURED" in text and "](power_trace.png)" in text
    import matplotlib.image

    assert matplotlib.image.imread(tmp_path / "report" / "power_trace.png")[..., :3].std() > 0.05
    assert "power and energy: MEASURED by tegrastats" in result.stdout


@pytest.mark.slow
def test_auto_goes_on_without_power_where_tegrastats_shows_no_rails_and_tegrastats_asked_by_name_fails(
    dpedge, exported, tmp_path, fake_tegrastats, tegrastats_line
):
    fake = fake_tegrastats(
        tmp_path / "bin",
        [tegrastats_line("agx_orin_jetpack5_user.txt")],
        stale=tegrastats_line("agx_orin_jetpack5_user.txt"),
    )
    auto = dpedge("profile", exported, *QUICK, "--json", path=(fake,))
    assert auto.returncode == 0, auto.stderr
    assert "power" not in json.loads(auto.stdout) and "power not measured" in auto.stderr and "root" in auto.stderr
    asked = dpedge("profile", exported, *QUICK, "--power", "tegrastats", path=(fake,))
    assert asked.returncode == 1 and asked.stderr.strip().count("\n") == 0 and "root" in asked.stderr
    assert "Traceback" not in asked.stderr


@pytest.mark.slow
def test_a_tegrastats_that_fails_gives_its_own_reason_in_one_line(dpedge, exported, tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "tegrastats").write_text(
        f"#!{sys.executable}\nimport sys\nsys.exit('tegrastats: cannot open the rail monitor')\n"
    )
    (folder / "tegrastats").chmod(0o755)
    result = dpedge("profile", exported, *QUICK, "--power", "tegrastats", path=(folder,))
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0
    assert "cannot open the rail monitor" in result.stderr and "exit 1" in result.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--power", "tegrastats"], "no tegrastats on PATH"),
        (["--power", "jtop"], "jetson-stats"),
        (["--power", "watts"], "--power takes auto, tegrastats, jtop, off"),
        (["--power-seconds", "0"], "--power-seconds must be > 0"),
        (["--idle-seconds", "-1"], "--idle-seconds must be ≥ 0"),
        (["--power-interval", "1"], "--power-interval must be ≥ 10 ms"),
        (["--backend", "orin-emu", "--power", "tegrastats"], "orin-emu predicts latency"),
    ],
)
def test_power_options_that_cannot_work_fail_before_any_work_in_one_line(dpedge, exported, tmp_path, options, message):
    result = dpedge("profile", exported, *options, "--report", tmp_path / "report", path=())
    assert result.returncode == 1 and message in result.stderr
    assert result.stderr.strip().count("\n") == 0 and not (tmp_path / "report").exists()


class FakeJtopClient:
    """jetson-stats 4's client as its documentation describes it: `ok()` waits for the
    service's next reading, `power` holds it."""

    def __init__(self, interval):
        self.interval, self.count = interval, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def ok(self):
        import time

        time.sleep(self.interval)
        self.count += 1
        return True

    @property
    def power(self):
        return {
            "rail": {
                "VDD_IN": {"online": True, "power": 5000 + self.count, "avg": 5000},
                "VDD_SOC": {"online": True, "power": 1400, "avg": 1400},
            },
            "tot": {"power": 5000 + self.count, "avg": 5000, "name": "VDD_IN"},
        }


def test_jtop_readings_taken_while_the_work_runs_are_the_measurement(monkeypatch):
    import types

    module = types.SimpleNamespace(jtop=FakeJtopClient, JtopException=RuntimeError)
    monkeypatch.setitem(sys.modules, "jtop", module)
    ran = []
    profile = measure_power(
        JtopMeter(20),
        {"sparse": lambda sample: ran.append(sample)},
        np.zeros((3, 2, 1, 4, 4), np.float32),
        seconds=0.3,
        idle_seconds=0.2,
        interval_ms=20,
    )
    sparse = profile.phases["sparse"]
    assert len(ran) >= 3 + 3, "a warm-up pass, then at least one timed run per sample"
    assert len(sparse.samples) >= 3 and all(s.total_of == "VDD_IN" for s in sparse.samples)
    readings = [s.total_mw for s in sparse.samples]
    assert readings == sorted(readings) and sparse.mean_mw == pytest.approx(np.mean(readings))
    assert profile.idle is not None and profile.idle.mean_mw > 5000


def test_jtop_service_errors_become_one_line(monkeypatch):
    import types

    class ServiceDown(Exception):
        pass

    def refuse(interval):
        raise ServiceDown("The jtop.service is not active. Please run:\nsudo jtop --install-service")

    monkeypatch.setitem(sys.modules, "jtop", types.SimpleNamespace(jtop=refuse, JtopException=ServiceDown))
    with pytest.raises(ConfigError, match=r"^jtop: The jtop.service is not active. Please run:$"):
        measure_power(JtopMeter(20), {"sparse": lambda sample: None}, np.zeros((1, 2, 1, 4, 4), np.float32), 0.1, 0, 20)
