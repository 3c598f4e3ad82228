"""device.configure_threads: torch threads from the user's setting, else the physical cores left free."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from napari_medgen import device


def threads_in_child(env_extra: dict[str, str], call: str = "configure_threads()") -> list[str]:
    code = ("from napari_medgen import device; n = device." + call + "; import torch; "
            "import os; print(n, torch.get_num_threads(), os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                          env={**env, **env_extra})
    return done.stdout.split()


def test_the_users_omp_num_threads_wins():
    assert threads_in_child({"OMP_NUM_THREADS": "1"}) == ["1", "1", "PASSIVE"]


def test_an_explicit_count_wins_over_the_environment():
    assert threads_in_child({"OMP_NUM_THREADS": "3"}, "configure_threads(2)") == ["2", "2", "PASSIVE"]


def test_the_default_takes_the_free_physical_cores(monkeypatch):
    monkeypatch.setattr(device, "physical_cores", lambda: 8)
    monkeypatch.setattr(os, "getloadavg", lambda: (2.7, 1.0, 1.0))
    assert device.default_threads() == 6  # 2 cores busy with other work
    monkeypatch.setattr(os, "getloadavg", lambda: (30.0, 1.0, 1.0))
    assert device.default_threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert device.default_threads() == 8


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux affinity")
def test_physical_cores_within_the_affinity_mask():
    n = device.physical_cores()
    assert 1 <= n <= len(os.sched_getaffinity(0))


def test_the_cpu_model_comes_from_cpuinfo_or_the_platform(monkeypatch, tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14 96-Core Processor\n")
    real_path = device.Path
    monkeypatch.setattr(device, "Path", lambda p: info if p == "/proc/cpuinfo" else real_path(p))
    assert device.cpu_model() == "AMD EPYC 9R14 96-Core Processor"
    monkeypatch.setattr(device, "Path", lambda p: tmp_path / "absent")  # no /proc (macOS, Windows)
    monkeypatch.setattr(device.platform, "processor", lambda: "arm")
    assert device.cpu_model() == "arm"
    monkeypatch.setattr(device.platform, "processor", lambda: "")
    assert device.cpu_model() == "unknown CPU"


def test_once_torch_is_loaded_only_an_explicit_count_changes_it():
    code = ("import torch; torch.set_num_threads(1); from napari_medgen import device; "
            "a = device.configure_threads(); b = device.configure_threads(2); print(a, b, torch.get_num_threads())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.split() == ["1", "2", "2"]
