"""`streamscore models …` through the CLI's entry point (`pipelines.cli.main`: parser, exit codes, error lines)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from models.registry import DEFAULT_ROOT, ModelRegistry
from operators.contract import OperatorContext
from operators.exceptions import OperatorError
from operators.reco.operator import RecoOperator
from operators.reco.schemas import Click
from pipelines.cli import main
from state import MemoryVersionedStore


def _run(argv: list[str]) -> int:
    """`streamscore ARGV` through the CLI's one error boundary (its exit codes and `streamscore: error:` lines)."""
    return main(argv)


@pytest.fixture()
def registry_dir(tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    shutil.copytree(DEFAULT_ROOT / "risk", root / "risk")
    return root


def test_list_show_promote(registry_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["models", "--registry", str(registry_dir), "list"]) == 0
    listed = capsys.readouterr().out
    assert "* risk@3" in listed and "  risk@1" in listed
    assert _run(["models", "--registry", str(registry_dir), "show", "risk@3"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"] == "risk" and shown["version"] == 3 and shown["current"] is True
    assert shown["generator"] == {"module": "models.synthetic.transactions", "version": 2, "seed": 1,
                                  "events": 200_000}
    assert _run(["models", "--registry", str(registry_dir), "show", "risk@7"]) == 1
    assert "risk@7 not found" in capsys.readouterr().err
    assert _run(["models", "--registry", str(registry_dir), "promote", "risk"]) == 2
    assert "streamscore: error: promote needs NAME@VERSION" in capsys.readouterr().err
    assert _run(["models", "--registry", str(registry_dir), "show", "risk@x"]) == 2  # a malformed reference
    assert "streamscore: error: model reference 'risk@x'" in capsys.readouterr().err
    assert _run(["models", "--registry", str(registry_dir), "promote", "risk@1"]) == 0
    assert ModelRegistry(registry_dir).current("risk") == 1


@pytest.mark.parametrize("damage", ["missing", "corrupted", "not_onnx"])
def test_show_and_list_name_an_unusable_version(
    registry_dir: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    """A version whose file is gone, changed after registration, or not a graph onnxruntime loads (registered
    as it is, so its sha256 matches) is reported by `show` (status, exit 1) and `list`, with the reason."""
    registry = ModelRegistry(registry_dir)
    version = 3
    path = registry.model_path("risk", version)
    if damage == "missing":
        path.unlink()
    elif damage == "corrupted":
        path.write_bytes(path.read_bytes()[:-1] + b"\0")
    else:  # junk whose sha256 the manifest holds: only onnxruntime can tell
        path.write_bytes(b"not a model")
        manifest_path = path.with_name("manifest.json")
        manifest = json.loads(manifest_path.read_text())
        manifest["sha256"] = hashlib.sha256(b"not a model").hexdigest()
        manifest_path.write_text(json.dumps(manifest))
    capsys.readouterr()
    assert _run(["models", "--registry", str(registry_dir), "show", f"risk@{version}"]) == 1
    status = json.loads(capsys.readouterr().out)["status"]
    expected = {"missing": "is missing", "corrupted": "sha256", "not_onnx": "onnxruntime cannot load"}[damage]
    assert status.startswith("unusable: ") and expected in status, status
    assert _run(["models", "--registry", str(registry_dir), "list"]) == 0
    listed = {line[2:].split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "UNUSABLE" in listed[f"risk@{version}"] and expected in listed[f"risk@{version}"]
    assert "UNUSABLE" not in listed["risk@1"]
    assert _run(["models", "--registry", str(registry_dir), "show", "risk@1"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "ok"


def test_evaluate_json_and_report(
    registry_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report"
    argv = [
        "models",
        "--registry",
        str(registry_dir),
        "evaluate",
        "risk",
        "--seed",
        "77",
        "--events",
        "20000",
    ]
    assert _run([*argv, "--json", "--report-dir", str(report)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"roc_auc", "pr_auc", "rules_only_roc_auc"}
    assert (report / "risk@3-seed77.json").is_file() and (report / "risk@3-seed77.png").is_file()
    written = json.loads((report / "risk@3-seed77.json").read_text())
    assert written["metrics"] == metrics and written["model"] == "risk@3"


def test_train_registers_a_deterministic_new_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "registry"
    argv = ["models", "--registry", str(root), "train", "risk", "--seed", "3", "--events", "20000", "--quiet"]
    assert _run(argv) == 0
    assert _run(argv) == 0
    assert "registered risk@2 (current: 1)" in capsys.readouterr().out
    registry = ModelRegistry(root)
    first, second = registry.manifest("risk", 1), registry.manifest("risk", 2)
    assert first["sha256"] == second["sha256"]  # same seed, same model, byte for byte
    assert first["training_seed"] == 3 and first["training_events"] == 20_000
    assert first["generator"] == {"module": "models.synthetic.transactions", "version": 2, "seed": 3,
                                  "events": 20_000}


def test_train_risk_large_registers_the_wider_model_under_its_own_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "registry"
    argv = ["models", "--registry", str(root), "train", "risk", "--large", "--seed", "3", "--events", "20000",
            "--quiet"]
    assert _run(argv) == 0
    assert "registered risk-large@1 (current: 1)" in capsys.readouterr().out
    registry = ModelRegistry(root)
    assert registry.names() == ["risk-large"]
    manifest = registry.manifest("risk-large", 1)
    assert manifest["hidden"] == [256, 128, 64] and manifest["feature_names"] == _shipped_risk_features()
    assert _run(["models", "--registry", str(root), "train", "reco", "--large", "--quiet"]) == 2


def _shipped_risk_features() -> list[str]:
    return list(ModelRegistry(DEFAULT_ROOT).manifest("risk")["feature_names"])


def test_train_reco_small(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    argv = ["models", "--registry", str(root), "train", "reco", "--seed", "3", "--events", "8000", "--quiet"]
    assert _run(argv) == 0
    manifest = ModelRegistry(root).manifest("reco", 1)
    assert manifest["hidden_size"] == 64 and manifest["catalog_size"] == 5000 and manifest["k"] == 10
    assert set(manifest["metrics"]) == {"hr_at_10", "mrr_at_10", "popularity_hr_at_10"}


def test_train_reco_with_a_larger_k_serves_that_many_items(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    assert _run(["models", "--registry", str(root), "train", "reco", "--k", "25", "--events", "5000", "--quiet"]) == 0
    registry = ModelRegistry(root)
    manifest = registry.manifest("reco", 1)
    assert manifest["k"] == 25 and len(manifest["popular_items"]) >= 25
    assert [o["shape"][1] for o in manifest["outputs"] if o["name"] == "top_items"] == [25]
    operator = RecoOperator(k=25)
    operator.open(OperatorContext(registry=registry))
    click = Click(event_id="e", user_id="u", session_id="s", item_id=3, action="view", ts=1_767_225_600_000)
    (result,) = operator.process(click, MemoryVersionedStore().key("s"), None)
    assert len(result.items) == 25 == len(set(result.items)) and 3 not in result.items
    with pytest.raises(OperatorError, match="k is 25, expected an int >= 26"):
        RecoOperator(k=26).open(OperatorContext(registry=registry))
    assert _run(["models", "--registry", str(root), "train", "risk", "--k", "5", "--quiet"]) != 0
