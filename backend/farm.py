"""The one Ray helper: many independent items on a pool of long-lived workers, with bounded retries.

``Farm(setup, config)`` starts (on first use) one Ray actor per GPU or per CPU slot of the cluster. Each
actor calls ``setup()`` once and keeps what it returns (loaded models) for every item it is given.
``farm.map(work, items)`` runs ``work(state, item)`` on the actors and yields one ``Outcome`` per item as
it finishes (any order). An item whose worker dies (killed, out of memory) or whose ``work`` raises is
tried again, up to ``config.retries`` more times, then reported as failed: one bad item never stops the
others. A dead actor is restarted by Ray (its ``setup`` runs again). ``work``'s return value travels back
to the driver, so outputs are written where the driver can write (atomically, by the caller).

Ray is imported here only, lazily: ``import backend`` works without it (``pip install ray``).
``address``: ``auto`` starts a private Ray on this machine (or joins the session already started in this
process); anything else is a cluster address as ``ray.init`` takes it (``ray://head:10001``, ``head:6379``).

``FarmExecutor`` is the same pool behind synthesis' task-runner interface (``run(fn, keys)``, ``close()``).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BadInput

Work = Callable[[Any, Any], Any]
"``work(state, item) -> value``: a module-level function (or picklable object) the workers can import."


@dataclass(frozen=True)
class FarmConfig:
    address: str = "auto"
    "``auto``: a local Ray on this machine; else the address of a running cluster."
    workers: int = 0
    "Actors; 0: one per GPU of the cluster when ``gpu``, else one per CPU slot."
    gpu: bool | None = None
    "Each actor holds one GPU; None: when the cluster has GPUs."
    retries: int = 2
    "More attempts for an item whose worker died or whose work raised."
    in_flight: int = 2
    "Items queued per actor, so that none waits for the driver between items."
    progress: bool = True
    "One aggregated tqdm bar on stderr."
    desc: str = "items"

    def __post_init__(self) -> None:
        if not isinstance(self.address, str) or not self.address.strip():
            raise BadInput("The Ray address is empty.", hint="Use --ray auto, or a cluster address (host:6379).")
        for name, low in (("workers", 0), ("retries", 0), ("in_flight", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= 100_000:
                raise BadInput(f"Farm setting {name}={value!r} is out of range.", hint=f"Use a whole number >= {low}.")


@dataclass
class Outcome:
    index: int
    "The item's position in the list given to ``map``."
    item: Any
    value: Any = None
    error: str = ""
    "'' on success; else the last attempt's reason, one line."
    attempts: int = 1
    crashed: bool = False
    "The last attempt's worker process died (rather than ``work`` raising)."


class Farm:
    """A pool of Ray actors that keep ``setup()``'s state; close it (or use ``with``) to free them."""

    def __init__(self, setup: Callable[[], Any] | None, config: FarmConfig | None = None) -> None:
        self.setup = setup
        self.config = config or FarmConfig()
        self._actors: list[Any] = []
        self._started_ray = False

    @property
    def size(self) -> int:
        """Actors started (0 before the first ``map``)."""
        return len(self._actors)

    def __enter__(self) -> Farm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def map(self, work: Work, items: Iterable[Any]) -> Iterator[Outcome]:
        """``work(state, item)`` for every item on the actors; one ``Outcome`` per item as it finishes."""
        items = list(items)
        if not items:
            return
        ray = self._start(len(items))
        bar = _bar(self.config, len(items))
        try:
            yield from _Scheduler(ray, self._actors, ray.put(work), items, self.config).outcomes(bar)
        finally:
            bar.close()

    def close(self) -> None:
        if not self._actors and not self._started_ray:
            return
        import ray

        for actor in self._actors:
            ray.kill(actor)
        self._actors = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def _start(self, items: int) -> Any:
        ray = _import_ray()
        if not ray.is_initialized():
            _init(ray, self.config.address)
            self._started_ray = True
        if not self._actors:
            gpu = self.config.gpu
            if gpu is None:
                gpu = ray.cluster_resources().get("GPU", 0) >= 1
            count = min(self.config.workers or _slots(ray, gpu), items)
            options = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 1}
            worker = ray.remote(max_restarts=-1, max_task_retries=0, **options)(_Worker)
            self._actors = [worker.remote(self.setup) for _ in range(max(count, 1))]
        return ray


class _Worker:
    """Runs in an actor process: ``setup()`` once (lazily, so a failing setup is an item's error), then items."""

    def __init__(self, setup: Callable[[], Any] | None) -> None:
        self._setup = setup
        self._ready = setup is None
        self._state: Any = None

    def call(self, work: Work, item: Any) -> Any:
        if not self._ready:
            self._state = self._setup()  # type: ignore[misc]
            self._ready = True
        return work(self._state, item)

    def pid(self) -> int:
        return os.getpid()


class _Scheduler:
    """Keeps every live actor fed with ``in_flight`` items; retries an item on a failure, up to the bound.

    When an actor's process dies, Ray restarts it; until a probe call answers, it gets no items (calls to a
    restarting actor fail at once and would use up the retries of healthy items).
    """

    PROBE_WAIT_S = 0.25
    PROBES = 2400
    "Probes (one per PROBE_WAIT_S) before an actor that does not come back is given up: ten minutes."

    def __init__(self, ray: Any, actors: list[Any], work_ref: Any, items: list[Any], config: FarmConfig) -> None:
        self.ray, self.actors, self.work_ref, self.items, self.config = ray, actors, work_ref, items, config
        self.queue = list(range(len(items)))[::-1]  # pop() takes the first
        self.attempts = [0] * len(items)
        self.pending: dict[Any, tuple[int, int]] = {}  # ref -> (item index, actor index)
        self.load = [0] * len(actors)
        self.healthy = [True] * len(actors)
        self.probes: dict[Any, tuple[int, int]] = {}  # ref -> (actor index, probes so far)
        self.lost: set[int] = set()

    def outcomes(self, bar: Any) -> Iterator[Outcome]:
        while self.queue or self.pending:
            self._submit()
            if not self.pending and not self.probes:  # every actor given up
                yield from self._fail_rest("no Ray worker is left (they died and did not come back)", bar)
                return
            done, _ = self.ray.wait([*self.pending, *self.probes], num_returns=1)
            if done[0] in self.probes:
                self._probed(done[0])
                continue
            index, actor = self.pending.pop(done[0])
            self.load[actor] -= 1
            outcome = self._collect(done[0], index, actor)
            if outcome is None:
                self.queue.append(index)  # tried again next
                continue
            bar.update(1)
            yield outcome

    def _submit(self) -> None:
        live = [a for a in range(len(self.actors)) if self.healthy[a]]
        while self.queue and live:
            actor = min(live, key=self.load.__getitem__)
            if self.load[actor] >= self.config.in_flight:
                return
            index = self.queue.pop()
            self.attempts[index] += 1
            ref = self.actors[actor].call.remote(self.work_ref, self.items[index])
            self.pending[ref] = (index, actor)
            self.load[actor] += 1

    def _collect(self, ref: Any, index: int, actor: int) -> Outcome | None:
        """The item's outcome, or None when it failed and has attempts left."""
        from ray.exceptions import RayActorError, RayTaskError

        crashed = False
        try:
            value = self.ray.get(ref)
        except RayActorError:
            error, crashed = "its worker process died (killed, out of memory or crashed)", True
            self._probe(actor, 0)
        except RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            error = f"{type(cause).__name__}: {cause}"
        else:
            return Outcome(index, self.items[index], value, "", self.attempts[index])
        if self.attempts[index] <= self.config.retries:
            return None
        return Outcome(index, self.items[index], None, error.replace("\n", " "), self.attempts[index], crashed)

    def _probe(self, actor: int, count: int) -> None:
        if self.healthy[actor] or count:
            self.healthy[actor] = False
            self.probes[self.actors[actor].pid.remote()] = (actor, count + 1)

    def _probed(self, ref: Any) -> None:
        import time

        from ray.exceptions import RayActorError

        actor, count = self.probes.pop(ref)
        try:
            self.ray.get(ref)
        except RayActorError:
            if count >= self.PROBES:
                self.lost.add(actor)
                return
            time.sleep(self.PROBE_WAIT_S)
            self._probe(actor, count)
            return
        self.healthy[actor] = True

    def _fail_rest(self, reason: str, bar: Any) -> Iterator[Outcome]:
        while self.queue:
            index = self.queue.pop()
            bar.update(1)
            yield Outcome(index, self.items[index], None, reason, max(self.attempts[index], 1), True)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BadInput("--ray needs the ray package, which is not installed.",
                       hint="pip install ray (2.60 is tested), or leave --ray out to run here.") from None
    return ray


def _init(ray: Any, address: str) -> None:
    """Start a local Ray (``auto``) or join ``address``; the workers import this project from its folder."""
    try:
        if address == "auto":
            init_local()
        else:
            _check_reachable(address)
            ray.init(address=address, **_QUIET)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise BadInput(f"Cannot reach the Ray cluster at {address}: {exc}".replace("\n", " "),
                       hint="Check the address (ray status on the head node), or use --ray auto.") from None


def _check_reachable(address: str) -> None:
    """Fail fast (Ray itself retries for minutes) when ``host:port`` takes no TCP connection."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise ConnectionError(f"{host}:{port} does not answer ({exc})") from None


_QUIET = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}


def init_local(num_cpus: int | None = None) -> None:
    """A private Ray on this machine whose workers import this project (``num_cpus``: None = all)."""
    import ray

    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=num_cpus, runtime_env={"env_vars": {"PYTHONPATH": path}}, **_QUIET)


def _slots(ray: Any, gpu: bool) -> int:
    resources = ray.cluster_resources()
    count = int(resources.get("GPU" if gpu else "CPU", 0))
    if count < 1:
        what = "GPUs" if gpu else "CPUs"
        raise BadInput(f"The Ray cluster has no {what}.", hint="Add nodes, or run without --ray.")
    return count


class _NoBar:
    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


def _bar(config: FarmConfig, total: int) -> Any:
    if not config.progress:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=config.desc, unit="item", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


class FarmExecutor:
    """A synthesis ``Executor`` on a Farm: ``run(fn, keys)`` yields ``(key, error)``; the actors outlive stages.

    A task's exception is its error (the task runner retries it); the farm retries only dead workers.
    """

    def __init__(self, config: FarmConfig | None = None) -> None:
        base = config or FarmConfig()
        self.farm = Farm(None, FarmConfig(base.address, base.workers, base.gpu, base.retries, base.in_flight,
                                          progress=False, desc=base.desc))

    def run(self, fn: Callable[[str], object], keys: list[str]) -> Iterator[tuple[str, str]]:
        for outcome in self.farm.map(_KeyTask(fn), keys):
            yield outcome.item, outcome.error or outcome.value

    def close(self) -> None:
        self.farm.close()


class _KeyTask:
    """``fn(key)`` in a worker; returns '' or the failure's one-line summary with its last frame."""

    def __init__(self, fn: Callable[[str], object]) -> None:
        self.fn = fn

    def __call__(self, state: Any, key: str) -> str:
        try:
            self.fn(key)
        except Exception as exc:  # noqa: BLE001 - one task's failure is data for the report
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            return f"{type(exc).__name__}: {exc} (at {frame.filename}:{frame.lineno})"
        return ""
