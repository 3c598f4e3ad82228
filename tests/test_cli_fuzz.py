"""Fuzz the CLI's numeric options with hypothesis: a command either succeeds or exits with status 2 and
one plain line on stderr, never a traceback.

Every numeric option of every command is parsed with hostile text (huge and negative integers, NaN,
inf, 1e308, garbage); the fast commands (``phantom`` on a small grid, ``deform`` on a tiny label map)
also run end to end with values drawn inside and outside their ranges. Kept under ~30 s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_medgen.cli import build_parser, main
from napari_medgen.io.volume import Volume
from napari_medgen.io.writers import write_volume

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
MY_COMMANDS = ("train", "demo", "info", "convert", "phantom", "deform", "evaluate", "experiment", "quantize",
               "anomaly", "directions", "longitudinal", "synthesize", "sample", "usefulness")

numeric_text = st.one_of(
    st.integers(-2**80, 2**80).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(-1e3, 1e3).map(lambda v: f"{v:.3g}"),
    st.sampled_from(["nan", "-nan", "inf", "-inf", "1e308", "-1e308", "1e-320", "0", "-0", "0x10", "1_000", " 3",
                     "", "=", "3=nan", "0=1e308", "1=2", "٣"]),
    st.text(max_size=6),
)


def numeric_options(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """(command path, option string) of every option whose value is converted by a type function (not Path)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += numeric_options(sub, (*prefix, name))
        elif action.option_strings and action.type not in (None, Path, str) and action.nargs != 0:
            found.append((prefix, action.option_strings[-1]))
    return found


PARSER = build_parser()
OPTIONS = numeric_options(PARSER)


def run(argv: list[str]) -> tuple[int, str]:
    """main(argv) -> (status, stderr); an exception other than SystemExit fails the test (a traceback)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as exc:
            status = exc.code
    return status, err.getvalue()


def assert_clean(status: int, err: str) -> None:
    assert "Traceback" not in err
    if status != 0:
        assert status == 2 and len(err.strip().splitlines()) == 1 and err.startswith("medgen"), err


def test_options_are_found_and_mine_are_range_checked():
    mine = [(cmd, opt) for cmd, opt in OPTIONS if not cmd or cmd[0] in MY_COMMANDS]
    assert len(mine) >= 40
    for cmd, opt in mine:  # a bare int/float would let 2**70, -1 or NaN through to the task
        sub = PARSER
        for name in cmd:
            sub = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        action = next(a for a in sub._actions if opt in a.option_strings)
        assert action.type not in (int, float), f"medgen {' '.join(cmd)} {opt} takes any {action.type.__name__}"


@FUZZ
@given(option=st.sampled_from(OPTIONS), text=numeric_text)
def test_any_numeric_option_parses_or_is_one_plain_line(option, text):
    cmd, opt = option
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            PARSER.parse_known_args([*cmd, f"{opt}={text}"])
        except SystemExit as exc:
            assert exc.code == 2 and len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
    assert "Traceback" not in err.getvalue()


@pytest.fixture(scope="module")
def tiny_labels(tmp_path_factory) -> Path:
    data = np.zeros((4, 12, 12), np.uint8)
    data[1:3, 3:9, 3:9] = 1
    data[2, 5:7, 5:7] = 2
    return write_volume(Volume(data, spacing=(1.5, 1.5, 3.0), is_label=True),
                        tmp_path_factory.mktemp("fuzz") / "labels.nii.gz")


phantom_values = st.fixed_dictionaries({
    "--tumour-radius": numeric_text, "--breathing-phase": st.floats(0, 1).map(repr),
    "--body-scale": st.floats(0.4, 1.6).map(repr), "--rotation": numeric_text, "--noise": st.floats(0, 1.2).map(repr),
    "--bias": numeric_text, "--blur": st.floats(0, 25).map(repr), "--seed": numeric_text,
})


@settings(FUZZ, max_examples=12)
@given(values=phantom_values, shape=st.tuples(st.integers(0, 3), st.integers(0, 24), st.integers(1, 24)))
def test_phantom_runs_or_refuses_in_one_line(tmp_path, values, shape):
    argv = ["--quiet", "phantom", "--out", str(tmp_path / "out"), "--overwrite", "--shape", *map(str, shape)]
    for opt, text in values.items():
        argv.append(f"{opt}={text}")
    assert_clean(*run(argv))


@settings(FUZZ, max_examples=25)
@given(method=st.sampled_from(["elastic", "dilate", "erode", "affine"]), a=numeric_text, b=numeric_text,
       label=st.integers(-2, 3).map(str) | numeric_text)
def test_deform_runs_or_refuses_in_one_line(tmp_path, tiny_labels, method, a, b, label):
    pairs = {"elastic": ("--sigma-mm", "--magnitude-mm"), "dilate": ("--radius", "--label"),
             "erode": ("--radius", "--label"), "affine": ("--rotation", "--scale")}[method]
    argv = ["--quiet", "deform", "--labels", str(tiny_labels), "--method", method, "--overwrite",
            "--out", str(tmp_path / "out.nii.gz"), f"{pairs[0]}={a}", f"{pairs[1]}={label if 'label' in pairs[1] else b}"]
    status, err = run(argv)
    assert_clean(status, err)
    if status == 0:
        assert (tmp_path / "out.nii.gz").is_file()
