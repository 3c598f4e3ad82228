"""Resource trade-off table: sizes, timings and quality lost are measured, not assumed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_medgen.errors import InputError
from napari_medgen.models.features import FeatureExtractor, build_feature_encoder
from napari_medgen.models.spade import build_spade, network_config
from napari_medgen.models.store import save_model
from napari_medgen.progress import run_to_completion
from napari_medgen.tasks.anomaly import DEFAULT_MODEL as ANOMALY_MODEL
from napari_medgen.tasks.quantize import COLUMNS, format_table, quantize, weights_mb
from napari_medgen.models.store import SHIPPED_DIR as SHIPPED_MODELS


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    torch.manual_seed(0)
    return FeatureExtractor(build_feature_encoder({})["encoder"], (32, 32), 1, "random-init")


@pytest.fixture(scope="module")
def tiny_spade(tmp_path_factory):
    cfg = network_config(n_classes=8, input_shape=[64, 64], channels=[8, 16], spade_hidden=8, z_dim=4)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("spade") / "tiny_spade"
    card = {"family": "spade", "network": cfg, "shape": [64, 64],
            "normalization": {"kind": "percentile", "low": 0.5, "high": 99.5, "lo_value": 0.0, "hi_value": 1.0}}
    save_model(path, build_spade(cfg), card)
    return path


def test_spade_table_measures_every_precision(tiny_spade, extractor, tmp_path):
    result = run_to_completion(quantize(tiny_spade, n_samples=2, repeats=1, extractor=extractor,
                                        segmenter=lambda im: (im > np.median(im)).astype(np.int64),
                                        csv_path=tmp_path / "q.csv", plot_path=tmp_path / "q.png"))
    rows = {r["precision"]: r for r in result.rows}
    assert list(rows) == ["fp32", "bf16", "int8_dynamic", "int8_static"]
    fp32, bf16 = rows["fp32"], rows["bf16"]
    assert fp32["size_ratio"] == 1 and fp32["ssim_vs_fp32"] == pytest.approx(1.0, abs=1e-4) and fp32["fd_vs_fp32"] == 0
    assert bf16["weights_mb"] == pytest.approx(fp32["weights_mb"] / 2, rel=0.02)  # every weight is 2 bytes
    assert 0.9 < bf16["ssim_vs_fp32"] <= 1.0 and 0 <= fp32["dice"] <= 1
    for r in result.rows:  # each precision either ran and was measured, or says why it could not run
        assert r["status"] == "ok" and r["ms_per_sample"] > 0 or r["status"].startswith("not supported")
    if rows["int8_static"]["status"] == "ok":
        assert rows["int8_static"]["weights_mb"] < fp32["weights_mb"] / 2
    header = (tmp_path / "q.csv").read_text().splitlines()[0].split(",")
    assert header == list(COLUMNS) and (tmp_path / "q.png").stat().st_size > 1000
    assert "bf16" in format_table(result)


def test_anomaly_model_bf16_keeps_its_output():
    result = run_to_completion(quantize(ANOMALY_MODEL, precisions=("fp32", "bf16"), n_samples=2, repeats=1,
                                        extractor=None))
    fp32, bf16 = result.rows
    assert bf16["ssim_vs_fp32"] >= 0.98 and bf16["size_ratio"] == pytest.approx(2.0, rel=0.02)
    assert math.isnan(bf16["fd_vs_fp32"])  # no extractor given: not measured, not invented


def test_weights_mb_counts_tensor_bytes():
    assert weights_mb(torch.nn.Linear(1000, 250)) == pytest.approx((1000 * 250 + 250) * 4 / 1e6)


def test_unsupported_family_is_refused(tmp_path):
    save_model(tmp_path / "enc", build_feature_encoder({}), {"family": "feature_encoder", "network": {}})
    with pytest.raises(InputError, match="spade or anomaly_ae"):
        run_to_completion(quantize(tmp_path / "enc"))


SHIPPED_SPADE = [pytest.param(name, marks=pytest.mark.skipif(not (SHIPPED_MODELS / f"{name}.json").is_file(),
                                                            reason=f"{name} is not shipped yet"))
                 for name in ("spade_phantom", "spade_brain")]


@pytest.mark.parametrize("name", SHIPPED_SPADE)
def test_shipped_synthesis_model_bf16_bar(name):
    """Issue bar: bf16 halves the weights of a shipped synthesis model and keeps SSIM >= 0.98 against fp32."""
    result = run_to_completion(quantize(SHIPPED_MODELS / name, precisions=("fp32", "bf16"), n_samples=4, repeats=1,
                                        extractor=None))
    fp32, bf16 = result.rows
    assert bf16["size_ratio"] >= 1.95 and bf16["ssim_vs_fp32"] >= 0.98
