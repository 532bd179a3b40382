"""The versioned model registry: a plain folder tree that ships with the code.

Layout::

    <root>/<name>/CURRENT                     # text: the current version number
    <root>/<name>/<version>/model.onnx
    <root>/<name>/<version>/manifest.json     # name, version, sha256, created, opset, inputs, outputs, …

The default root is `$STREAMSCORE_MODEL_REGISTRY`, else `$STREAMSCORE_HOME/models` (`~/.streamscore/models`),
seeded on first use with the committed models shipped in this package (`models/registry/`, `SHIPPED_ROOT`),
so that training and promoting never write into the installed package; a model name shipped later is seeded
when the home registry lacks it. Versions are positive integers allocated with an atomic `mkdir`, so two processes
registering at once get different versions. Manifests and `CURRENT` are written atomically (temp + rename).
Runtime dependencies: onnxruntime and numpy (the `onnx` package is used, if installed, to read the opset).
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import onnxruntime as ort

from models.exceptions import ManifestError, ModelIntegrityError, ModelNotFoundError
from models.handle import ModelHandle, file_sha256

REGISTRY_ENV = "STREAMSCORE_MODEL_REGISTRY"
#: The committed models that ship with the package (read-only: the seed of every home registry).
SHIPPED_ROOT = Path(__file__).resolve().parent / "registry"
#: Kept for callers that mean "the committed models".
DEFAULT_ROOT = SHIPPED_ROOT
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
CURRENT_FILE = "CURRENT"
REQUIRED_MANIFEST_KEYS = ("name", "version", "sha256", "created", "opset", "inputs", "outputs")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "string",
}


@dataclass(frozen=True)
class RegisteredModel:
    """One model name in the registry: its versions (ascending) and the current one (None if unset)."""

    name: str
    versions: tuple[int, ...]
    current: int | None


def parse_ref(ref: str) -> tuple[str, int | None]:
    """Split `"name@version"` (or `"name"`, meaning the current version) into (name, version or None)."""
    name, sep, version = ref.partition("@")
    if not sep or version in ("", "current"):
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise ValueError(f"model reference {ref!r}: expected NAME or NAME@VERSION, VERSION >= 1")
    return name, int(version)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; registry files are meant to be shared read-only
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _io_schema(model_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Input/output names, shapes (symbol or None on dynamic axes) and dtypes, as onnxruntime sees them."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])

    def describe(args: list[Any]) -> list[dict[str, Any]]:
        return [
            {
                "name": a.name,
                "shape": [d if isinstance(d, int | str) else None for d in a.shape],
                "dtype": _ORT_DTYPES.get(a.type, a.type),
            }
            for a in args
        ]

    return describe(session.get_inputs()), describe(session.get_outputs())


def _opset(model_path: Path) -> int | None:
    """The default-domain opset of the model (None when the `onnx` package is not installed)."""
    try:
        import onnx
    except ImportError:  # the runtime image may ship without onnx; the opset is then taken from the caller
        return None
    model = onnx.load(str(model_path), load_external_data=False)
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def home_registry_root() -> Path:
    """`$STREAMSCORE_HOME/models` (default `~/.streamscore/models`): the registry when none is configured."""
    return Path(os.environ.get("STREAMSCORE_HOME", "~/.streamscore")).expanduser().resolve() / "models"


def seeded_home_registry() -> Path:
    """The home registry, with every shipped model name it lacks copied in (each name atomically: copied to a
    temporary folder, then renamed, so concurrent first uses never see half a model)."""
    root = home_registry_root()
    root.mkdir(parents=True, exist_ok=True)
    if not SHIPPED_ROOT.is_dir():
        return root
    for shipped in sorted(p for p in SHIPPED_ROOT.iterdir() if p.is_dir() and _NAME.match(p.name)):
        target = root / shipped.name
        if target.exists():
            continue
        staging = Path(tempfile.mkdtemp(prefix=f".seed-{shipped.name}-", dir=root))
        shutil.copytree(shipped, staging / shipped.name, ignore=shutil.ignore_patterns("__pycache__"))
        with contextlib.suppress(OSError):  # another process seeded it first: keep theirs
            os.rename(staging / shipped.name, target)
        shutil.rmtree(staging, ignore_errors=True)
    return root


class ModelRegistry:
    """Versioned ONNX models on disk: register, promote, list, read manifests, and load `ModelHandle`s."""

    def __init__(self, root: Path | str | None = None) -> None:
        if root is None:
            configured = os.environ.get(REGISTRY_ENV)
            root = Path(configured) if configured else seeded_home_registry()
        self.root = Path(root)

    # ----------------------------------------------------------------- queries
    def names(self) -> list[str]:
        """Model names present in the registry, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name))

    def versions(self, name: str) -> list[int]:
        """Registered versions of `name` (ascending; those with a manifest); [] when the name is unknown."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(
            int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / MANIFEST_FILE).is_file()
        )

    def current(self, name: str) -> int | None:
        """The version `CURRENT` points at, or None when it is not set."""
        pointer = self.root / name / CURRENT_FILE
        if not pointer.is_file():
            return None
        text = pointer.read_text(encoding="utf-8").strip()
        if not text.isdigit():
            raise ManifestError(f"reading {pointer}: expected a version number, found {text!r}")
        return int(text)

    def list(self) -> list[RegisteredModel]:
        """Every model name with its versions and current version."""
        return [RegisteredModel(n, tuple(self.versions(n)), self.current(n)) for n in self.names()]

    def _describe(self) -> str:
        models = self.list()
        if not models:
            return f"the registry at {self.root} is empty"
        listed = ", ".join(f"{m.name} (versions {list(m.versions)}, current {m.current})" for m in models)
        return f"the registry at {self.root} holds: {listed}"

    def _resolve(self, name: str, version: int | None) -> int:
        versions = self.versions(name)
        if not versions:
            raise ModelNotFoundError(f"model {name!r} not found; {self._describe()}")
        if version is None:
            version = self.current(name)
            if version is None:
                raise ModelNotFoundError(
                    f"model {name!r} has no CURRENT version (versions {versions}); "
                    f"promote one with `streamscore models promote {name}@{versions[-1]}`"
                )
        if version not in versions:
            raise ModelNotFoundError(
                f"model {name}@{version} not found; {name!r} has versions {versions} "
                f"(current {self.current(name)}) in {self.root}"
            )
        return version

    def manifest(self, name: str, version: int | None = None) -> dict[str, Any]:
        """The manifest of `name@version` (the current version when None)."""
        version = self._resolve(name, version)
        path = self.root / name / str(version) / MANIFEST_FILE
        try:
            manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ManifestError(f"reading {path}: not valid JSON ({exc})") from exc
        missing = [k for k in REQUIRED_MANIFEST_KEYS if k not in manifest]
        if missing:
            raise ManifestError(f"reading {path}: required fields {missing} are missing")
        if manifest["name"] != name or manifest["version"] != version:
            raise ManifestError(
                f"reading {path}: manifest says {manifest['name']}@{manifest['version']}, "
                f"but it is stored as {name}@{version}"
            )
        return manifest

    def model_path(self, name: str, version: int | None = None) -> Path:
        """The path of the ONNX file of `name@version` (the current version when None)."""
        version = self._resolve(name, version)
        path = self.root / name / str(version) / MODEL_FILE
        if not path.is_file():
            raise ModelNotFoundError(f"model {name}@{version}: manifest exists but {path} is missing")
        return path

    # ----------------------------------------------------------------- loading
    def load(self, name: str, version: int | None = None, **session_kwargs: int) -> ModelHandle:
        """A verified `ModelHandle` for `name@version` (the current version when None).

        Raises `ModelNotFoundError` (listing what exists) or `ModelIntegrityError` (sha256 mismatch).
        `session_kwargs` (`intra_op_threads`, `inter_op_threads`) are passed to the handle.
        """
        manifest = self.manifest(name, version)
        return ModelHandle(self.model_path(name, manifest["version"]), manifest, **session_kwargs)

    def problem(self, name: str, version: int | None = None) -> str | None:
        """Why `name@version` cannot serve (its file missing, its sha256 not the manifest's, onnxruntime refusing
        it), or None when it loads. What a job would meet if the version were promoted."""
        try:
            self.load(name, version)
        except (ModelNotFoundError, ModelIntegrityError) as exc:
            return str(exc)
        except Exception as exc:  # onnxruntime's own errors (a truncated or invalid graph)
            return f"onnxruntime cannot load {self.model_path(name, version)}: {type(exc).__name__}: {exc}"
        return None

    def load_ref(self, ref: str, **session_kwargs: int) -> ModelHandle:
        """`load` by reference: `"risk@2"`, or `"risk"` for the current version."""
        name, version = parse_ref(ref)
        return self.load(name, version, **session_kwargs)

    # ----------------------------------------------------------------- writing
    def register(
        self,
        name: str,
        onnx_path: Path | str,
        manifest_fields: Mapping[str, Any],
        *,
        promote: bool | None = None,
    ) -> int:
        """Copy `onnx_path` in as the next version of `name`; write its manifest; return the new version.

        The manifest gets `name`, `version`, `sha256`, `created` (UTC ISO-8601), `opset`, `inputs` and
        `outputs` (read from the file) plus `manifest_fields` (feature_names, metrics, seed, quantized …);
        computed fields win over given ones except `opset`, which is used when it cannot be read.
        `promote`: True makes it current; None (default) makes it current only if there is no current version.
        """
        if not _NAME.match(name):
            raise ValueError(f"registering model {name!r}: use lowercase [a-z0-9_-], starting with a letter")
        source = Path(onnx_path)
        if not source.is_file():
            raise FileNotFoundError(f"registering model {name!r}: {source} does not exist")
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        version = max([0, *self._all_version_dirs(name)]) + 1
        while True:
            try:
                (folder / str(version)).mkdir()
                break
            except FileExistsError:
                version += 1
        target = folder / str(version) / MODEL_FILE
        shutil.copyfile(source, target)
        inputs, outputs = _io_schema(target)
        manifest: dict[str, Any] = dict(manifest_fields)
        manifest.update(
            name=name,
            version=version,
            sha256=file_sha256(target),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            opset=_opset(target) or manifest_fields.get("opset"),
            inputs=inputs,
            outputs=outputs,
        )
        manifest.setdefault("quantized", False)
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        _write_atomic(folder / str(version) / MANIFEST_FILE, text)
        if promote or (promote is None and self.current(name) is None):
            self.promote(name, version)
        return version

    def _all_version_dirs(self, name: str) -> builtins.list[int]:
        folder = self.root / name
        return [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []

    def promote(self, name: str, version: int) -> None:
        """Make `name@version` the current version (the file is verified against its manifest first)."""
        self.load(name, version)  # refuses unknown versions and tampered files before pointing at them
        _write_atomic(self.root / name / CURRENT_FILE, f"{version}\n")
