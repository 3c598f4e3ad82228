"""The import layers of DESIGN.md hold: the contracts in pyproject.toml ([tool.importlinter]) are kept.

widgets|cli -> tasks -> training -> models -> data -> io, napari/Qt/magicgui only in the faces, and no
import circle among the modules of one package. Run ``lint-imports`` in the repository for the report.
"""

import logging
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

from importlinter.cli import lint_imports  # noqa: E402

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@pytest.fixture
def loggers_kept():
    """import-linter configures logging with dictConfig, which disables every logger that exists already
    (later tests that read the project's log records would see none): enable them again afterwards."""
    before = {name for name, lg in logging.Logger.manager.loggerDict.items()
              if isinstance(lg, logging.Logger) and not lg.disabled}
    yield
    for name in before:
        logging.getLogger(name).disabled = False


@pytest.mark.parametrize("contract", ["layers", "gui", "circles"])
def test_import_contract_is_kept(contract: str, capsys: pytest.CaptureFixture[str], loggers_kept: None) -> None:
    code = lint_imports(config_filename=str(PYPROJECT), limit_to_contracts=(contract,), no_cache=True, no_logo=True)
    assert code == 0, capsys.readouterr().out
