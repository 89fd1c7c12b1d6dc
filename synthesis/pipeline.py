"""A whole run: generate -> filter -> labels -> dataset, each stage a set of idempotent tasks (tasks.py)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.atomic import prepare_folder
from backend.errors import BadInput
from backend.settings import BackendSettings

from .config import RunConfig
from .dataset import ShardTask, plan_shards, verdicts, write_summary
from .generators import AssetGenerator, make_generator
from .layout import Layout
from .stages import (
    FilterTask,
    GenerateTask,
    LabelTask,
    RgbTask,
    ViewTask,
    blender_python,
    config_record,
    record_failures,
    write_json,
)
from .tasks import Executor, LocalExecutor, TaskReport, run_tasks


@dataclass
class RunSummary:
    manifest: dict[str, Any]
    reports: list[TaskReport] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    "Wall time per stage in this call (resumed tasks cost nothing)."
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    "CPU time per stage of this process and its finished subprocesses (Blender renders; not pool workers)."
    notes: list[str] = field(default_factory=list)


def run(config: RunConfig, out: Path | str, executor: Executor | None = None, progress: bool = True,
        settings: BackendSettings | None = None) -> RunSummary:
    """Make (or finish making) the dataset of ``config`` under ``out``; safe to call again after a kill."""
    layout = Layout(prepare_folder(out))
    _claim(layout, config)
    for folder in layout.folders():
        folder.mkdir(parents=True, exist_ok=True)
    layout.remove_stale_temporaries()
    generators, ids, notes = _generators(config, settings)
    python, why = blender_python(config) if config.render.rgb else ("", "")
    if why:
        notes.append(why)
        print(f"note: {why}", file=sys.stderr)
    executor = executor or LocalExecutor(config.workers)
    summary = RunSummary(manifest={}, notes=notes)
    try:
        for stage, task, keys in (("generate", GenerateTask(layout, config, generators), lambda: ids),
                                  ("filter", FilterTask(layout, config), lambda: ids),
                                  ("labels", LabelTask(layout, config), lambda: _passed(layout, ids)),
                                  ("views", ViewTask(layout, config),
                                   lambda: _passed(layout, ids) if config.views.count else []),
                                  ("rgb", RgbTask(layout, config, python),
                                   lambda: _passed(layout, ids) if python else [])):
            summary.reports.append(_stage(stage, task, keys(), executor, config, progress, summary))
            record_failures(layout, stage, summary.reports[-1].failed)
        required = ["labels"] + ["views"] * (config.views.count > 0) + ["rgb"] * bool(python)
        judged = verdicts(layout, ids, required)
        licences = {g.name: g.licence for g in generators.values()}
        plan = plan_shards([a for a, v in judged.items() if v["passed"]], config)
        shards = ShardTask(layout, config, plan, licences, rgb=bool(python))
        report = _stage("dataset", shards, list(plan), executor, config, progress, summary)
        summary.reports.append(report)
        if report.failed:
            raise RuntimeError(f"Writing shards failed: {report.failed}")
        summary.manifest = write_summary(layout, config, plan, judged, licences, notes)
    finally:
        executor.close()
    return summary


def _stage(stage: str, task: Any, keys: list[str], executor: Executor, config: RunConfig, progress: bool,
           summary: RunSummary) -> TaskReport:
    t0, c0 = time.perf_counter(), _cpu_seconds()
    report = run_tasks(stage, keys, task, task.done, executor, retries=config.retries, progress=progress)
    summary.seconds[stage] = time.perf_counter() - t0
    summary.cpu_seconds[stage] = _cpu_seconds() - c0
    return report


def _cpu_seconds() -> float:
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _claim(layout: Layout, config: RunConfig) -> None:
    """Record the config digest in a new folder; refuse to resume a folder made with another config."""
    record = config_record(config)
    if layout.run_file.is_file():
        previous = json.loads(layout.run_file.read_text(encoding="utf-8")).get("config_digest")
        if previous != record["config_digest"]:
            raise BadInput(f"{layout.out} holds a run made with another configuration.",
                           hint="Resume with the same config, or choose a new --out folder.")
        return
    if any(layout.out.iterdir()):
        raise BadInput(f"{layout.out} is not empty and holds no synthesis run.", hint="Choose an empty --out folder.")
    write_json(layout.run_file, record)


def _generators(config: RunConfig, settings: BackendSettings | None) -> tuple[dict[str, AssetGenerator], list[str],
                                                                                 list[str]]:
    generators: dict[str, AssetGenerator] = {}
    ids: list[str] = []
    notes: list[str] = []
    for cfg in config.generators:
        generator = make_generator(cfg, settings)
        why = generator.unavailable()
        if why:
            notes.append(why)
            print(f"note: {why}", file=sys.stderr)
            continue
        generators[generator.name] = generator
        ids += generator.asset_ids(cfg.count)
    return generators, ids, notes


def _passed(layout: Layout, ids: list[str]) -> list[str]:
    out = []
    for asset_id in ids:
        path = layout.verdict(asset_id)
        if path.is_file() and json.loads(path.read_text(encoding="utf-8"))["passed"]:
            out.append(asset_id)
    return out
