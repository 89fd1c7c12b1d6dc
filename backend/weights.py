"""Model weights: resolve a model name to a local folder, download only when allowed, load safetensors.

Resolution order for a model ``name``:
1. ``<weights_dir>/<name>`` (or ``weights_dir`` itself if it directly holds the model's files);
2. ``$HI3DGEN_WEIGHTS/<name>`` (folded into ``BackendSettings.weights_dir`` at the entry point); with
   neither, ``default_weights_dir()/<name>``, where ``python -m backend download`` puts models then;
3. the Hugging Face cache (``huggingface_hub``, offline look-up);
4. a download from the Hub into ``<weights_dir>/<name>`` (or the HF cache) - only with ``allow_download``.
Otherwise ``WeightsMissing`` names the missing files and the command that fetches them. The ``download``
command itself is ``backend/downloads.py`` (plan, sizes, licences) over ``backend/fetch.py`` (resumable).

Weights folders are untrusted: looking files up lists only the folders the required patterns name (at
most ``MAX_LISTING`` entries each), never a whole tree. Downloads have a connect timeout
(``CONNECT_TIMEOUT``) and a per-read timeout (``READ_TIMEOUT``), so a dead network fails within seconds;
a folder left partly filled with no network is reported as offline with the files still missing.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import WeightsInvalid, WeightsMissing
from .settings import BackendSettings

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ModelSpec:
    """A published model: its Hub repository and the files the backend needs from it."""

    name: str
    repo_id: str
    required: tuple[str, ...]
    "Glob patterns that must each match at least one file."
    download: tuple[str, ...]
    "Glob patterns fetched from the Hub (allow_patterns)."
    description: str
    licence: str = ""
    "The licence the model card names (shown before a download)."


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "trellis-normal", "Stable-X/trellis-normal-v0-1",
            required=("pipeline.json", "ckpts/*.json", "ckpts/*.safetensors"),  # the loader checks each file
            download=("pipeline.json", "ckpts/ss_*", "ckpts/slat_flow_*", "ckpts/slat_dec_mesh_*"),
            description="NoRLD geometry networks (normal map -> 3D), about 2.5 GB",
            licence="MIT",
        ),
        ModelSpec(
            "dinov2", "facebook/dinov2-with-registers-large",
            required=("config.json", "model.safetensors"), download=("config.json", "model.safetensors"),
            description="DINOv2 ViT-L/14 with registers, the condition encoder, about 1.2 GB",
            licence="Apache-2.0",
        ),
        ModelSpec(
            "yoso-normal", "Stable-X/yoso-normal-v1-8-1",
            required=("model_index.json", "unet/config.json", "unet/*.safetensors", "vae/config.json",
                      "vae/*.safetensors", "controlnet/config.json", "controlnet/*.safetensors"),
            download=("model_index.json", "unet/config.json", "unet/*.safetensors", "vae/config.json",
                      "vae/*.safetensors", "controlnet/config.json", "controlnet/*.safetensors"),
            description="NiRNE normal estimator (image -> normal map), about 2.6 GB",
            licence="Apache-2.0",
        ),
        ModelSpec(
            "rmbg", "briaai/RMBG-1.4",
            required=("model.safetensors",), download=("config.json", "model.safetensors"),
            description="optional learned background removal for images without alpha (IS-Net, 176 MB; "
                        "BRIA's licence: non-commercial use)",
            licence="bria-rmbg-1.4 (non-commercial use; gated: accept the terms on the model page and set "
                    "HF_TOKEN)",
        ),
    )
}


def spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise WeightsMissing(f"Unknown model '{name}'.", hint=f"Known models: {', '.join(MODELS)}.")
    return MODELS[name]


MAX_LISTING = 4096
"Most entries read from one folder while looking for a pattern (a weights folder may be someone's home)."
CONNECT_TIMEOUT = 10.0
"Seconds to connect to the Hub and get a file's metadata."
READ_TIMEOUT = 30
"Seconds one read of a download may wait for data before the download fails."


def missing_files(folder: Path, model: ModelSpec) -> list[str]:
    """The required patterns with no matching file under ``folder`` (only their own folders are listed)."""
    if not folder.is_dir():
        return list(model.required)
    return [pat for pat in model.required if not _has_match(folder, pat)]


def _has_match(folder: Path, pattern: str) -> bool:
    """Whether a file matches ``pattern`` ('ckpts/*.json': wildcards in the last part only)."""
    parent, _, name = pattern.rpartition("/")
    where = folder / parent if parent else folder
    if not any(c in name for c in "*?["):
        return (where / name).is_file()
    try:
        with os.scandir(where) as entries:
            for n, entry in enumerate(entries, 1):
                if fnmatch.fnmatch(entry.name, name) and entry.is_file():
                    return True
                if n >= MAX_LISTING:
                    return False
    except OSError:  # absent, not a folder, no permission
        return False
    return False


def default_weights_dir() -> Path:
    """Where ``download`` puts models when no weights folder is set: ``<user cache>/hi3dgen/weights``."""
    base = os.environ.get("XDG_CACHE_HOME") or (os.environ.get("LOCALAPPDATA", "") if os.name == "nt" else "")
    return Path(base or Path.home() / ".cache") / "hi3dgen" / "weights"


def candidate_folders(name: str, settings: BackendSettings) -> list[Path]:
    """Local folders that may hold ``name``, in resolution order (cache excluded)."""
    if not settings.weights_dir:
        return [default_weights_dir() / name]
    root = Path(settings.weights_dir).expanduser()
    return [root / name, root]


def find_local(name: str, settings: BackendSettings) -> Path | None:
    """A local folder that holds every required file of ``name``, or None."""
    model = spec(name)
    for folder in candidate_folders(name, settings):
        if not missing_files(folder, model):
            return folder
    cached = _hf_cache_folder(model)
    if cached is not None and not missing_files(cached, model):
        return cached
    return None


def status(name: str, settings: BackendSettings) -> tuple[bool, list[str]]:
    """(present, missing patterns) for the handshake; never touches the network."""
    if find_local(name, settings) is not None:
        return True, []
    folders = candidate_folders(name, settings)
    return False, missing_files(folders[0], spec(name)) if folders else list(spec(name).required)


def resolve(name: str, settings: BackendSettings, progress: bool = False) -> Path:
    """The folder holding model ``name``; downloads it first only if ``settings.allow_download``."""
    model = spec(name)
    found = find_local(name, settings)
    if found is not None:
        return found
    if not settings.allow_download:
        raise missing_error([name], settings)
    return _download(model, settings, progress)


def missing_error(names: list[str], settings: BackendSettings) -> WeightsMissing:
    """One ``WeightsMissing`` naming every absent model of ``names`` (and its missing files) at once."""
    parts = []
    for name in names:
        model = spec(name)
        files = missing_files(candidate_folders(name, settings)[0], model) if settings.weights_dir else []
        parts.append(f"'{name}' ({model.repo_id}" + (f"; missing: {', '.join(files)}" if files else "") + ")")
    return WeightsMissing(f"Weights for {', '.join(parts)} are not present.",
                          hint=download_hint(names, settings))


def download_hint(names: list[str], settings: BackendSettings) -> str:
    """What to do about absent ``names``, in the words of where the backend runs (``settings.context``)."""
    command = f"python -m backend download {' '.join(names)}"
    if settings.context == "cli":
        if settings.weights_dir:
            return f"Run: {command} --weights-dir {settings.weights_dir}"
        return (f"Run: {command} (into {default_weights_dir()}), or add --weights-dir DIR to it and to this "
                "command.")
    folder = f" --weights-dir {settings.weights_dir}" if settings.weights_dir else (
        " --weights-dir DIR and set DIR as the Weights Folder")
    return (f"Press Download Weights in the Hi3DGen panel or the add-on preferences (or turn on Allow Weight "
            f"Downloads there), or run: {command}{folder}.")


def _download(model: ModelSpec, settings: BackendSettings, progress: bool) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
    except ImportError:
        raise WeightsMissing("huggingface_hub is not installed, so weights cannot be downloaded.",
                             hint="pip install huggingface_hub in the backend's environment.") from None
    target = Path(settings.weights_dir).expanduser() / model.name if settings.weights_dir else None
    (enable_progress_bars if progress else disable_progress_bars)()
    try:
        with hub_timeouts():
            path = snapshot_download(model.repo_id, allow_patterns=list(model.download),
                                     local_dir=str(target) if target else None, etag_timeout=CONNECT_TIMEOUT)
    except Exception as exc:  # network errors come in many types; all mean the same to the user
        if _is_offline_error(exc):
            raise _offline(model, target) from None
        raise WeightsMissing(f"Downloading {model.repo_id} failed: {type(exc).__name__}: {exc}",
                             hint="Check the network connection, or download the files by hand into "
                                  f"{target or 'the weights folder'}.") from None
    folder = Path(path)
    missing = missing_files(folder, model)
    if missing and (hub_offline() or not _hub_reachable(model.repo_id)):
        raise _offline(model, folder)  # the Hub client hands back what is on disk when it cannot connect
    if missing:
        raise WeightsMissing(f"The download of {model.repo_id} lacks: {', '.join(missing)}.",
                             hint="The repository layout may have changed; report this.")
    return folder


@contextlib.contextmanager
def hub_timeouts() -> Iterator[None]:
    """Per-read download timeout of the Hub client for the duration of the block (its constant is read
    at import, so the attribute is set here rather than the environment)."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_DOWNLOAD_TIMEOUT
    constants.HF_HUB_DOWNLOAD_TIMEOUT = int(os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT") or READ_TIMEOUT)
    try:
        yield
    finally:
        constants.HF_HUB_DOWNLOAD_TIMEOUT = saved


def hub_offline() -> bool:
    """True when Hub access is switched off (HF_HUB_OFFLINE, now or when huggingface_hub was imported)."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")
    return flag or bool(constants.HF_HUB_OFFLINE)


def _is_offline_error(exc: BaseException) -> bool:
    """Connection refused, timeouts, DNS failures, offline mode: the network, not the repository."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    offline = {"ConnectError", "TimeoutException", "NetworkError", "LocalEntryNotFoundError",
               "OfflineModeIsEnabled", "ConnectTimeout", "ReadTimeout"}
    return bool(names & offline) or (exc.__cause__ is not None and _is_offline_error(exc.__cause__))


def _hub_reachable(repo_id: str) -> bool:
    from huggingface_hub import HfApi

    try:
        HfApi().repo_info(repo_id, timeout=CONNECT_TIMEOUT)
    except Exception:  # any failure to reach the Hub means the same here
        return False
    return True


def _offline(model: ModelSpec, folder: Path | None) -> WeightsMissing:
    missing = missing_files(folder, model) if folder is not None else list(model.required)
    return WeightsMissing(
        f"Cannot reach the Hugging Face Hub (offline) to download {model.repo_id}; "
        f"these files are missing: {', '.join(missing)}.",
        hint="Connect to the network (and unset HF_HUB_OFFLINE) and run the download again, or copy the "
             f"files by hand into {folder or 'the weights folder'}.")


def _hf_cache_folder(model: ModelSpec) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        return Path(snapshot_download(model.repo_id, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError and friends)
        return None


def load_safetensors(path: Path, device: str = "cpu") -> dict[str, "torch.Tensor"]:
    """Load every tensor of a ``.safetensors`` file; a damaged file gives ``WeightsInvalid`` naming it."""
    if path.suffix != ".safetensors":
        raise WeightsInvalid(f"Refusing to load {path.name}: only .safetensors files are loaded.",
                             hint="Use the safetensors release of the weights.")
    if not path.is_file():
        raise WeightsMissing(f"Weights file not found: {path}", hint="Download the model again.")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsInvalid(f"Weights file {path} is damaged or not a safetensors file: {exc}",
                             hint="Delete it and download the model again.") from None
