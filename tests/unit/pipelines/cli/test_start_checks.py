"""`streamscore run`/`replay` refuse to start, before Flink, when the config or its models cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.cli import main
from pipelines.reco.config import RECO_CONFIG_PATH
from pipelines.risk.config import RISK_CONFIG_PATH


def _config(tmp_path: Path, source: Path, **changes: object) -> Path:
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    data.update(changes)
    path = tmp_path / source.name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("source", "changes", "args", "message"),
    [
        (RECO_CONFIG_PATH, {"k": 20}, (), "k is 10, expected an int >= 20"),
        (RISK_CONFIG_PATH, {"model": "risk@9"}, (), "model risk@9 not found"),
        (RISK_CONFIG_PATH, {"routes": [{"code": "big", "when": {"amount": {"at_least": 1}}, "model": "fraud"}]}, (),
         "model 'fraud' not found"),
        (RISK_CONFIG_PATH, {}, ("--model", "reco@1"), "was trained on features"),
    ],
    ids=["k_above_the_model", "unknown_version", "route_to_unknown_model", "model_of_another_kind"],
)
def test_run_refuses_models_that_cannot_serve_the_config(
    source: Path, changes: dict[str, object], args: tuple[str, ...], message: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pipeline = "reco" if source == RECO_CONFIG_PATH else "risk"
    path = _config(tmp_path, source, **changes)
    code = main(["--bootstrap", "127.0.0.1:1", "run", pipeline, "--config", str(path),
                 "--checkpoint-dir", str(tmp_path / "chk"), *args])
    err = capsys.readouterr().err
    assert code != 0 and "cannot start" in err and message in err, err
    assert not (tmp_path / "chk").exists()  # refused before the job was built


def test_run_refuses_a_bad_managed_memory_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--bootstrap", "127.0.0.1:1", "run", "risk", "--managed-memory", "lots",
                 "--checkpoint-dir", str(tmp_path / "chk")])
    assert code != 0 and "--managed-memory must be a size like 512m" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--runtime", "faust", "--checkpoint-dir", "x"), "--checkpoint-dir is not used by --runtime faust"),
        (("--runtime", "faust", "--parallelism", "2", "--fresh"),
         "--parallelism, --fresh are not used by --runtime faust"),
        (("--batch-size", "64"), "--batch-size is not used by --runtime flink: they configure the faust runtime"),
        (("--runtime", "faust", "--batch-size", "0"), "--batch-size must be >= 1"),
    ],
    ids=["checkpoint_dir_on_faust", "parallelism_and_fresh_on_faust", "batch_size_on_flink", "batch_size_zero"],
)
def test_run_refuses_options_its_runtime_does_not_read(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--bootstrap", "127.0.0.1:1", "run", "risk", *args])
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err, err


def test_training_without_torch_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # as on a runtime-only install: `import torch` fails
    monkeypatch.delitem(sys.modules, "models.training.reco", raising=False)
    code = main(["models", "--registry", str(tmp_path), "train", "reco", "--events", "100", "--quiet"])
    assert code == 1 and "pip install -e '.[train]'" in capsys.readouterr().err
