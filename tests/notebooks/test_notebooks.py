"""Every notebook in notebooks/ runs top to bottom on a real Jupyter kernel against a small
backfilled store, and draws its plots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from heapster_columnar.simulator.backfill import backfill

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store") / "metrics"
    end = datetime(2024, 6, 6, 12, tzinfo=UTC)
    backfill(
        str(root), nodes=4, pods_per_node=10, duration=timedelta(days=3), resolution=timedelta(minutes=10), end=end
    )
    return root


def test_there_are_notebooks() -> None:
    assert [p.name for p in NOTEBOOKS] == ["01-explore.ipynb", "02-rightsizing.ipynb", "03-chargeback.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, store: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEAPSTER_STORE", str(store))
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        f"{path.name} is committed with outputs: clear them"
    )
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} drew no plot"
