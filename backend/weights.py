"""Model weights: resolve a model name to a local folder, download only when allowed, load safetensors.

Resolution order for a model ``name``:
1. ``<weights_dir>/<name>`` (or ``weights_dir`` itself if it directly holds the model's files);
2. ``$HI3DGEN_WEIGHTS/<name>`` (folded into ``BackendSettings.weights_dir`` at the entry point); with
   neither, ``default_weights_dir()/<name>``, where ``python -m backend download`` puts models then;
3. the Hugging Face cache (``huggingface_hub``, offline look-up);
4. a download into the folder of step 1 or 2 - only with ``allow_download``, through the same code as
   ``python -m backend download`` (``backend/downloads.py``: plan, sizes, licences, free disk space, over
   ``backend/fetch.py``: resumable, checksums), its progress reported as the ``downloading`` stage.
Otherwise ``WeightsMissing`` names the missing files and the command that fetches them.

Weights folders are untrusted: looking files up lists only the folders the required patterns name (at
most ``MAX_LISTING`` entries each), never a whole tree. Downloads have a connect and per-read timeout
(``fetch.FetchOptions.timeout``), so a dead network fails within seconds; a failed download is reported
as ``WeightsMissing`` with its reason (offline, refused, no space, corrupt) and the files still missing.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BackendError, Cancelled, WeightsInvalid, WeightsMissing
from .jobs import JobContext
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


def resolve(name: str, settings: BackendSettings, ctx: JobContext | None = None) -> Path:
    """The folder holding model ``name``; downloads it first only if ``settings.allow_download``
    (with progress and cancel through ``ctx``)."""
    return resolve_all([name], settings, ctx)[name]


def resolve_all(names: Iterable[str], settings: BackendSettings, ctx: JobContext | None = None) -> dict[str, Path]:
    """The folders of every model of ``names``; the absent ones are downloaded together (one progress bar,
    one disk-space check) only if ``settings.allow_download``, else one ``WeightsMissing`` names them."""
    wanted = list(names)
    found = {name: find_local(name, settings) for name in wanted}
    absent = [name for name, folder in found.items() if folder is None]
    if absent and not settings.allow_download:
        raise missing_error(absent, settings)
    fetched = _download(absent, settings, ctx) if absent else {}
    return {name: found[name] or fetched[name] for name in wanted}


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


def _download(names: list[str], settings: BackendSettings, ctx: JobContext | None) -> dict[str, Path]:
    """Fetch ``names`` with the ``download`` command's code (``backend/downloads.py``): one plan, the free
    disk space checked first, resumable ``.part`` files, checksums; progress goes to ``ctx`` as the
    ``downloading`` stage (step and total in MB) and ``ctx``'s cancel stops it at the next chunk."""
    from .downloads import plan_download, run_plan
    from .fetch import FetchCancelled, FetchError

    ctx = ctx or JobContext()
    try:
        plan = plan_download(names, settings)
        ctx.step(DOWNLOAD_STAGE, 0, max(1, _mb(plan.to_fetch)), _plan_text(plan))
        folders = run_plan(plan, _progress_reporter(ctx), ctx.cancel_event, options=fetch_options())
    except FetchCancelled:
        raise Cancelled("Generation cancelled while downloading weights; what arrived is kept.",
                        hint="Start it again (or press Download Weights): the download resumes.") from None
    except FetchError as exc:
        raise download_failed(names, settings, exc) from None
    for name, folder in folders.items():
        missing = missing_files(folder, spec(name))
        if missing:  # the plan found it complete elsewhere, or the repository changed
            raise WeightsMissing(f"The download of {spec(name).repo_id} lacks: {', '.join(missing)}.",
                                 hint="The repository layout may have changed; report this.")
    return folders


def fetch_options() -> Any:
    """How patient an automatic download is (``fetch.FetchOptions``; tests shrink the chunk and pauses)."""
    from .fetch import FetchOptions

    return FetchOptions()


DOWNLOAD_STAGE = "downloading"
"The progress stage an automatic download reports (step / total in MB)."


def _mb(n: int) -> int:
    return int(n // 1_000_000)


def _plan_text(plan: Any) -> str:
    from .fetch import human_bytes

    names = ", ".join(f"{m.name} ({m.licence or 'licence: see the model page'})"
                      for m in plan.models if m.files)
    return f"{human_bytes(plan.remaining)} to fetch: {names}" if names else "weights present"


def _progress_reporter(ctx: JobContext) -> Callable[[Any, str], None]:
    """A ``run_plan`` callback that turns byte progress into ``ctx`` stage reports (no cancel raised here:
    the downloader checks the same event between chunks)."""
    from .fetch import human_bytes, human_seconds

    def report(p: Any, model: str) -> None:
        total = max(1, _mb(p.total))
        rate = f", {human_bytes(p.rate)}/s" if p.rate else ""
        text = (f"{model}/{p.file}: {human_bytes(p.done)} of {human_bytes(p.total)}{rate}, "
                f"{human_seconds(p.eta)} left")
        ctx.report(DOWNLOAD_STAGE, min(_mb(p.done), total), total, text)
    return report


def download_failed(names: list[str], settings: BackendSettings, exc: BackendError) -> WeightsMissing:
    """A failed automatic download as ``WeightsMissing`` (so the panel offers Download Weights), saying
    why (offline, refused, no space, corrupt) and what to do, with the files still missing."""
    parts = []
    for name in names:
        missing = missing_files(candidate_folders(name, settings)[0], spec(name))
        parts.append(f"'{name}'" + (f" (missing: {', '.join(missing)})" if missing else ""))
    offline = " (offline)" if _hub_offline() or "Cannot reach" in exc.message else ""
    return WeightsMissing(f"Weights for {', '.join(parts)} could not be downloaded{offline}: {exc.message}",
                          hint=exc.hint or download_hint(names, settings))


def _hub_offline() -> bool:
    from .hub import offline

    return offline()


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
