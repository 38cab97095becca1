"""Render on a Ray cluster: one actor per GPU (or per machine's CPUs), segments handed out with `ray.wait`.

Each actor builds its mode (the model) once and renders task after task with the serial path,
`process_video` (a segment is a `Span` of it), into files on storage every node sees: a long video
becomes segments in a work folder beside the output, joined by stream copy when all are done;
several clips are one task each, written beside their outputs and published as each finishes.

Why the pieces are as they are:

* the scheduler is a plain `ray.wait` loop, because a task must go to an idle actor (the model is
  loaded once per actor), a failed task must be retried on another actor, and a dead actor must be
  replaced; `ActorPool` does the first only;
* a worker killed mid-task (its actor dies) or a task that raises is tried again, on another actor,
  at most `RAY_ATTEMPTS` times in all; then the job fails with one line naming the task and the
  cause, and the finished segments stay in the work folder, where `resume=True` finds them;
* the seams are cross-faded (`join.cross_fade`) by the same actors once every segment is done, then
  the driver joins everything by stream copy;
* progress goes to a tiny counter actor as frames are written, so the driver shows one bar over
  all tasks, with retried frames counted once;
* `ray` is imported only here, when a render asks for it: it is an optional extra.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..carry import FrameMode
from ..errors import StreamdreamError
from ..io.paths import PendingOutput, check_output_path, hidden_sibling
from ..io.video import check_video_output, probe_video
from ..settings import RAY_ATTEMPTS, RAY_CONNECT_TIMEOUT_S, RAY_FADE, RAY_MIN_SEGMENT_EXTRA, RAY_OVERLAP, RAY_SEGMENTS_PER_WORKER
from ..video import RenderOptions, Span, Throughput, fit_max_side, process_video
from .join import cross_fade, join_segments
from .segments import Segment, plan_segments, read_timeline, segment_length

log = logging.getLogger(__name__)

ModeFactory = Callable[["object"], FrameMode]  # called on each worker with its torch device
Progress = Callable[[int, int], None]  # (frames written, frames in all)
JOINABLE = (".mp4", ".m4v", ".mov", ".mkv", ".webm")  # containers a stream-copy join can write (not GIF)
SHARED_STORAGE = "the input and output must be on a file system every Ray node mounts at the same path (NFS, or an object-storage mount such as s3fs or gcsfuse)"


def import_ray():
    """The `ray` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise StreamdreamError("--ray needs Ray: install streamdream[ray] (pip install 'streamdream[ray]')") from None
    return ray


@dataclass(frozen=True)
class ClusterOptions:
    """Where a job runs, the same for one long video and for many clips: the Ray cluster to join
    (None or "local": a Ray of this machine's own; "auto": the cluster it belongs to; HOST:PORT),
    how many workers to start there (None: one per GPU, or per machine without GPUs) and the torch
    device each sets up."""

    address: str | None = None
    workers: int | None = None
    device: str = "auto"


@dataclass(frozen=True)
class Task:
    """One unit of work: render `src` (all of it, or `span`) into `dst`, which must end up with `frames` frames."""

    name: str  # for messages: "segment 3 (frames 120-159) of clip.mp4", "clip.mp4"
    src: str
    dst: str
    frames: int
    span: Span | None = None
    counted: int | None = None  # frames that count toward the job's progress (a segment's tail is extra work)


@dataclass(frozen=True)
class TaskResult:
    name: str
    frames: int  # written
    warmup: int  # rendered and discarded
    seconds: float
    worker: str


@dataclass(frozen=True)
class WorkerStats(Throughput):
    """What one worker did; its `fps` counts the written frames only (warm-up frames cost time but count for nothing)."""

    worker: str
    frames: int
    warmup: int
    seconds: float


@dataclass(frozen=True)
class JobReport(Throughput):
    outputs: list[Path]
    frames: int
    seconds: float
    tasks: int
    reused: int  # segments found finished (resume)
    workers: list[WorkerStats]


class _Renderer:
    """A Ray actor: builds the mode once, then renders tasks through `process_video`."""

    def __init__(self, mode_factory: ModeFactory, device: str, threads: int | None, name: str) -> None:
        import ray

        from ..runtime import configure

        self.name = f"{name} on {ray.util.get_node_ip_address()}"
        self.error = None
        try:
            self.mode = mode_factory(configure(device, threads=threads))
        except StreamdreamError as e:  # e.g. no CUDA on this node: said once by the driver, not as a crash
            self.error = f"{self.name}: {e}"

    def check(self, markers: dict[str, str], inputs: dict[str, int]) -> str | None:
        """None when this node sees the driver's files; else why not (one line)."""
        if self.error:
            return self.error
        for path, token in markers.items():
            try:
                seen = Path(path).read_text()
            except OSError:
                seen = None
            if seen != token:
                return f"{self.name} cannot see {Path(path).parent} as the driver does; {SHARED_STORAGE}"
        for path, size in inputs.items():
            if not os.path.isfile(path) or os.path.getsize(path) != size:
                return f"{self.name} cannot read {path}; {SHARED_STORAGE}"
        return None

    def render(self, task: Task, options: RenderOptions, progress) -> TaskResult:
        warmup = task.span.warmup if task.span is not None else 0
        counted = task.frames if task.counted is None else task.counted

        def on_frame(done: int, total: int | None) -> None:
            if warmup < done <= warmup + counted:
                progress.update.remote(task.name, done - warmup)

        try:
            report = process_video(task.src, task.dst, self.mode, options, overwrite=True, on_frame=on_frame, span=task.span)  # dst: this job's own work file
        except BaseException:
            Path(task.dst).unlink(missing_ok=True)  # a partial segment is of no use: the retry renders it whole
            raise
        if report.frames != task.frames and not options.allow_partial_input:
            raise StreamdreamError(f"{task.src} gave {report.frames} of the {task.frames} frames of {task.name}")
        return TaskResult(task.name, report.frames, warmup, report.seconds, self.name)

    def cross_fade(self, *args, **kwargs) -> Path:
        """`join.cross_fade` on this worker: the workers that rendered the segments blend their seams."""
        return cross_fade(*args, **kwargs)


class _Progress:
    """A Ray actor counting frames written per task; a retried task's count starts again from zero."""

    def __init__(self) -> None:
        self.done: dict[str, int] = {}

    def update(self, task: str, frames: int) -> None:
        self.done[task] = frames

    def total(self) -> int:
        return sum(self.done.values())


class TaskFailed(StreamdreamError):
    """A task failed `RAY_ATTEMPTS` times; the message names it and the last cause."""


def _cause(ray, error: Exception) -> str:
    """The last failure of a task, in one line."""
    if isinstance(error, ray.exceptions.RayActorError):
        return "its worker died (killed, out of memory, or its node was lost)"
    cause = getattr(error, "cause", None) or error
    if isinstance(cause, StreamdreamError):
        return str(cause)
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"


class _Cluster:
    """The actors of one job and the loop that feeds them tasks."""

    def __init__(self, ray, mode_factory: ModeFactory, cluster: ClusterOptions) -> None:
        self.ray = ray
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        self.count = cluster.workers or gpus or max(1, nodes)
        if gpus:  # one GPU per actor (a share of one when more actors than GPUs are asked for)
            self.options, threads = {"num_gpus": min(1.0, gpus / self.count), "num_cpus": 1}, None
        else:  # CPU only: torch in each actor uses the cores the actor holds
            per_actor = max(1, int(resources.get("CPU", 1)) // self.count)
            self.options, threads = {"num_cpus": per_actor}, per_actor
        self.factory = (mode_factory, cluster.device, threads)
        self.remote = ray.remote(_Renderer).options(max_restarts=0, **self.options)
        self.made = 0
        self.actors = [self._new_actor() for _ in range(self.count)]
        self.progress = ray.remote(_Progress).options(num_cpus=0).remote()

    def _new_actor(self):
        self.made += 1
        return self.remote.remote(*self.factory, f"worker {self.made}")

    def check(self, folders: Sequence[Path], inputs: Sequence[Path]) -> None:
        """Fail in one line, before any rendering, when a worker cannot build its mode or see the files:
        the `inputs` at their sizes, and in each of `folders` a marker file written here just now."""
        markers = _markers(folders)
        try:
            problems = self.ray.get([actor.check.remote(markers, {str(p): p.stat().st_size for p in inputs}) for actor in self.actors])
        finally:
            for marker in markers:
                Path(marker).unlink(missing_ok=True)
        for problem in problems:
            if problem:
                raise StreamdreamError(problem)

    def run(self, tasks: Sequence[Task], options: RenderOptions, on_result: Callable[[TaskResult], None], on_progress: Callable[[int], None]) -> list[TaskResult]:
        """Render every task, each on the next idle actor; retry a failure on another actor; results in task order."""
        ray = self.ray
        queue = collections.deque(tasks)
        idle = list(self.actors)
        running: dict = {}  # ObjectRef -> (actor, task)
        failures: collections.Counter[str] = collections.Counter()
        failed_on: dict[str, object] = {}
        results: dict[str, TaskResult] = {}
        while queue or running:
            while queue and idle:
                task = queue.popleft()
                others = [a for a in idle if a is not failed_on.get(task.name)]
                actor = (others or idle)[0]
                idle.remove(actor)
                running[actor.render.remote(task, options, self.progress)] = (actor, task)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            on_progress(ray.get(self.progress.total.remote()))
            for ref in ready:
                actor, task = running.pop(ref)
                try:
                    result = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as error:
                    if isinstance(error, ray.exceptions.RayActorError):  # replace the dead worker
                        self.actors.remove(actor)
                        actor = self._new_actor()
                        self.actors.append(actor)
                    failures[task.name] += 1
                    if failures[task.name] >= RAY_ATTEMPTS:
                        raise TaskFailed(f"{task.name} failed {failures[task.name]} times: {_cause(ray, error)}") from None
                    log.warning("%s failed (%s); trying it again on another worker", task.name, _cause(ray, error))
                    failed_on[task.name] = actor
                    queue.appendleft(task)
                else:
                    results[task.name] = result
                    on_result(result)
                idle.append(actor)
        return [results[task.name] for task in tasks]

    def close(self) -> None:
        """Free the workers' resources (again: nothing happens)."""
        for actor in [*self.actors, *([self.progress] if self.progress is not None else [])]:
            self.ray.kill(actor)
        self.actors = []
        self.progress = None


def connect(ray, address: str | None) -> bool:
    """Join the cluster at `address` ("auto": the one this machine belongs to) or start a local one; True if this call did."""
    if address not in (None, "auto", "local"):  # named, so it must answer, even where a Ray runs in this process
        check_answers(address)
    if ray.is_initialized():  # the caller's own Ray (a test, a notebook): use it as it is
        return False
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except ConnectionError as e:
        raise StreamdreamError(f"cannot reach the Ray cluster at {address}: {str(e).splitlines()[0]}") from None
    return True


def check_answers(address: str) -> None:
    """Refuse at once an ADDRESS (HOST:PORT or ray://HOST:PORT) where nothing accepts a connection.

    `ray.init` would retry for minutes, printing a warning every few seconds, before it gives up.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise StreamdreamError(f"--ray {address}: the port must be a number from 1 to 65535")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as e:
        why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e)).lower()
        raise StreamdreamError(f"no Ray cluster answers at {address} ({why}); start one there with `ray start --head`, or leave ADDRESS out for a local Ray") from None


def _worker_stats(results: Sequence[TaskResult]) -> list[WorkerStats]:
    totals: dict[str, list] = collections.defaultdict(lambda: [0, 0, 0.0])
    for result in results:
        entry = totals[result.worker]
        entry[0] += result.frames
        entry[1] += result.warmup
        entry[2] += result.seconds
    return [WorkerStats(worker, *entry) for worker, entry in sorted(totals.items())]


def _markers(folders: Sequence[Path]) -> dict[str, str]:
    """A file with a fresh random token in each folder: a worker that reads the same token sees the same folder."""
    token = secrets.token_hex(8)
    markers = {}
    for folder in dict.fromkeys(folders):
        marker = folder / f".streamdream-ray-check-{token}"
        marker.write_text(token)
        markers[str(marker)] = token
    return markers


def _on_cluster(cluster: ClusterOptions, mode_factory: ModeFactory, job: Callable[[_Cluster], JobReport]) -> JobReport:
    """Connect (or start Ray), make the actors, run `job`, and leave the cluster as it was found."""
    ray = import_ray()
    started = connect(ray, cluster.address)
    try:
        pool = _Cluster(ray, mode_factory, cluster)
        try:
            return job(pool)
        finally:
            pool.close()
    finally:
        if started:
            ray.shutdown()


def _segment_done(path: Path, frames: int) -> bool:
    """A finished segment: the file is there and holds all its frames (a render that broke keeps a partial one)."""
    import av

    try:
        with av.open(str(path)) as container:
            return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size) == frames
    except (av.FFmpegError, IndexError, OSError):
        return False


def render_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    mode_factory: ModeFactory,
    options: RenderOptions = RenderOptions(),
    cluster: ClusterOptions = ClusterOptions(),
    *,
    overlap: int = RAY_OVERLAP,
    fade: int = RAY_FADE,
    segment_frames: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    fingerprint: str = "",
    on_progress: Progress | None = None,
) -> JobReport:
    """Render one video in segments on Ray and join them into `dst`; the same frames, timestamps and audio as `process_video`.

    `fingerprint` names everything else that shapes the pixels (the mode's settings): `resume`
    reuses the segments of an earlier run only when it, the options, the input and the plan's
    parameters match.
    """
    src, dst = Path(src).resolve(), Path(dst).resolve()
    check_video_output(dst, overwrite=overwrite, inputs=(src,))
    if dst.suffix.lower() not in JOINABLE:
        raise StreamdreamError(f"--ray writes {', '.join(JOINABLE)}, not {dst.suffix}")
    timeline = read_timeline(src)
    work = hidden_sibling(dst, "segments")
    plan_file = work / "plan.json"
    identity = {"input": str(src), "input_bytes": src.stat().st_size, "options": repr(options), "fingerprint": fingerprint, "suffix": dst.suffix,
                "overlap": overlap, "fade": fade, "segment_frames": segment_frames}

    plan = _load_plan(plan_file, identity, resume, overwrite)  # before any worker starts: a refusal costs nothing

    def job(pool: _Cluster) -> JobReport:
        nonlocal plan
        if plan is None:
            length = segment_frames or segment_length(timeline.frames, pool.count, overlap + fade, RAY_SEGMENTS_PER_WORKER, RAY_MIN_SEGMENT_EXTRA)
            plan = plan_segments(timeline, length, overlap, fade)
            work.mkdir(exist_ok=True)
            plan_file.write_text(json.dumps({**identity, "segments": [asdict(s) for s in plan]}))
        files = [work / f"segment-{s.index:05d}{dst.suffix}" for s in plan]
        todo = [Task(f"{s.describe()} of {src.name}", str(src), str(path), s.frames, s.span, counted=s.stop - s.start) for s, path in zip(plan, files, strict=True) if not _segment_done(path, s.frames)]
        reused_frames = timeline.frames - sum(t.counted for t in todo)
        pool.check([work], [src])
        started = time.perf_counter()  # the workers have their models: from here on it is rendering
        progress = (lambda done: on_progress(reused_frames + done, timeline.frames)) if on_progress else (lambda done: None)
        progress(0)
        try:  # the segments without audio: the join copies the source's once
            results = pool.run(todo, replace(options, audio=False), lambda result: None, progress)
        except (StreamdreamError, KeyboardInterrupt) as e:
            kept = sum(1 for s, path in zip(plan, files, strict=True) if _segment_done(path, s.frames))
            e.add_note(f"the {kept} finished segments are kept in {work} for --resume")
            raise
        info = fit_max_side(probe_video(src), options.max_side)  # what every worker encoded with
        seams = {s.index: work / f"seam-{s.index:05d}{dst.suffix}" for s in plan if s.fade}
        try:
            pool.ray.get([pool.actors[n % pool.count].cross_fade.remote(files[i - 1], files[i], seams[i], timeline.pts[plan[i].start : plan[i].start + plan[i].fade], info, crf=options.crf, preset=options.preset)
                          for n, i in enumerate(seams)])
        except pool.ray.exceptions.RayError as e:
            raise StreamdreamError(f"cross-fading the seams failed: {_cause(pool.ray, e)}; the finished segments are kept in {work} for --resume") from None
        parts = []
        for s, path in zip(plan, files, strict=True):
            if s.fade:
                parts.append((seams[s.index], None, timeline.pts[s.start]))
            parts.append((path, s.body, timeline.pts[s.start + s.fade]))
        frames = join_segments(parts, dst, info.time_base, audio_source=src if options.audio else None, overwrite=overwrite, inputs=(src,))
        shutil.rmtree(work)
        return JobReport([dst], frames, time.perf_counter() - started, len(todo), len(plan) - len(todo), _worker_stats(results))

    return _on_cluster(cluster, mode_factory, job)


def _load_plan(plan_file: Path, identity: dict, resume: bool, overwrite: bool) -> list[Segment] | None:
    """The plan of an earlier run to resume; None to plan afresh. Refuses to mix runs of other settings."""
    if not plan_file.exists():
        return None
    if not resume:
        if not overwrite:
            raise StreamdreamError(f"{plan_file.parent} holds the segments of an unfinished render; pass --resume to reuse them, or --overwrite to start over")
        shutil.rmtree(plan_file.parent)
        return None
    stored = json.loads(plan_file.read_text())
    segments = stored.pop("segments")
    if stored != identity:
        raise StreamdreamError(f"the segments in {plan_file.parent} were rendered from another input or with other settings; render with those, or pass --overwrite instead of --resume to start over")
    return [Segment(**{**s, "cuts": tuple(s["cuts"])}) for s in segments]


def render_files(
    pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]],
    mode_factory: ModeFactory,
    options: RenderOptions = RenderOptions(),
    cluster: ClusterOptions = ClusterOptions(),
    *,
    overwrite: bool = False,
    on_progress: Progress | None = None,
) -> JobReport:
    """Render many clips on Ray, one task each (`process_video` on a worker); each output published when it is done."""
    pairs = [(Path(s).resolve(), Path(d).resolve()) for s, d in pairs]
    for src, dst in pairs:
        check_output_path(dst, overwrite=overwrite, inputs=[s for s, _ in pairs])
    counts = [read_timeline(src).frames for src, _ in pairs]
    total = sum(counts)
    tasks = [Task(f"clip {i + 1} ({src.name})", str(src), str(hidden_sibling(dst, "ray", dst.suffix)), n) for i, ((src, dst), n) in enumerate(zip(pairs, counts, strict=True))]
    finals = {task.name: PendingOutput(dst, Path(task.dst), overwrite) for task, (_, dst) in zip(tasks, pairs, strict=True)}

    def job(pool: _Cluster) -> JobReport:
        pool.check([dst.parent for _, dst in pairs], [src for src, _ in pairs])
        started = time.perf_counter()
        progress = (lambda done: on_progress(done, total)) if on_progress else (lambda done: None)
        try:
            results = pool.run(tasks, options, lambda result: finals[result.name].publish(), progress)
        finally:
            for task in tasks:
                Path(task.dst).unlink(missing_ok=True)
        return JobReport([dst for _, dst in pairs], total, time.perf_counter() - started, len(tasks), 0, _worker_stats(results))

    return _on_cluster(cluster, mode_factory, job)
