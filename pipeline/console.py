"""What a command shows while it works: one live display, plain lines, or nothing.

The display reads progress from the run folder (finished unit manifests, each method's
metrics.jsonl, evaluation result files), the same state a resumed run starts from, so it needs
no hook into Prefect and shows reused work as done. Prefect's own log lines go to the run's
prefect.log (pipeline.prefect_env), so nothing interleaves with the display.

Modes: ``live`` (a rich progress display, on a terminal), ``plain`` (a line per stage step, for
CI, cron and pipes), ``quiet`` (errors and the final summary only).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

MODES = ("live", "plain", "quiet")
PLAIN_EVERY_S = 30.0  # plain mode: a line at least this often while a stage moves


def choose_mode(quiet: bool = False, plain: bool = False, stream=None) -> str:
    """quiet > plain > live on a terminal, plain otherwise."""
    if quiet:
        return "quiet"
    stream = stream if stream is not None else sys.stderr
    if plain or not stream.isatty():
        return "plain"
    return "live"


def human_seconds(seconds: float) -> str:
    """3.2 s, 47 s, 3 min 05 s, 1 h 02 min."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def human_number(value: float, digits: int = 3) -> str:
    """Numbers for people: 3 significant digits, no 16-digit floats."""
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    if abs(value) >= 10 ** digits:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


@dataclass
class StageState:
    """One stage as the display knows it: done of total, a detail line, when it started/ended."""

    name: str
    unit: str
    total: int = 0
    done: int = 0
    detail: str = ""
    started: float | None = None
    finished: float | None = None
    note: str = ""  # e.g. "skipped (corpus complete)"

    @property
    def seconds(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.monotonic()) - self.started


Probe = Callable[[], tuple[int, int, str]]  # -> (done, total, detail)


@dataclass
class StageProbe:
    name: str
    unit: str
    probe: Probe


@dataclass
class Display:
    """Shows the stages of one command; ``poll`` every ``interval`` s from a background thread."""

    stages: list[StageProbe]
    mode: str = "plain"
    interval: float = 1.0
    console: Console = field(default_factory=lambda: Console(stderr=True))
    states: dict[str, StageState] = field(init=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"display mode must be one of {MODES}, got {self.mode!r}")
        self.states = {s.name: StageState(s.name, s.unit) for s in self.stages}
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._plain_last: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._active: str | None = None

    # -- lifecycle
    def __enter__(self) -> Display:
        if self.mode == "live":
            self._progress = Progress(
                TextColumn("[bold]{task.fields[stage]:<9}"), BarColumn(bar_width=28), MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"), TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[detail]}"),
                console=self.console, transient=False, refresh_per_second=4,
            )
            self._progress.start()
        self._thread = threading.Thread(target=self._loop, name="crocopipe-display", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self.poll()  # the final state
        except Exception:  # the display never fails the command it shows
            pass
        if self._progress is not None:
            self._progress.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # a half-written file: the next poll reads it whole
                pass

    # -- state
    def skip(self, name: str, note: str) -> None:
        """A stage that had nothing to do (already complete)."""
        with self._lock:
            state = self.states[name]
            state.note = note
        self._show(name)

    def poll(self) -> None:
        with self._lock:
            for stage in self.stages:
                state = self.states[stage.name]
                if state.note or state.finished is not None:
                    continue
                done, total, detail = stage.probe()
                if total <= 0:
                    continue
                now = time.monotonic()
                if state.started is None:
                    if self._active is not None and self._active != stage.name and done == 0:
                        continue  # an earlier stage is still running
                    state.started = now
                    self._active = stage.name
                state.done, state.total, state.detail = min(done, total), total, detail
                if done >= total:
                    state.finished = now
                    self._active = None
                self._show(stage.name)
                if state.finished is None:
                    break  # later stages wait for this one

    def finish(self, name: str) -> None:
        """The command says the stage is over (e.g. the merge after the last unit)."""
        self.poll()
        with self._lock:
            state = self.states[name]
            if state.started is not None and state.finished is None:
                state.finished = time.monotonic()
                state.done = max(state.done, state.total)
                self._show(name)
            if self._active == name:
                self._active = None

    # -- output
    def _rate(self, state: StageState) -> str:
        seconds = state.seconds
        if not seconds or state.done == 0:
            return ""
        return f"{human_number(state.done / seconds, 2)} {state.unit}/s"

    def _show(self, name: str) -> None:
        state = self.states[name]
        if self.mode == "quiet":
            return
        if self.mode == "live" and self._progress is not None:
            fields = dict(stage=name, unit=state.unit, rate=self._rate(state),
                          detail=state.note or state.detail)
            if name not in self._tasks:
                self._tasks[name] = self._progress.add_task("", total=max(state.total, 1), **fields)
            self._progress.update(self._tasks[name], total=max(state.total, 1),
                                  completed=state.total if state.note else state.done, **fields)
            if state.finished is not None or state.note:
                self._progress.stop_task(self._tasks[name])
            return
        now = time.monotonic()
        last_done, last_time = self._plain_last.get(name, (-1, 0.0))
        ended = state.finished is not None or bool(state.note)
        if state.done == last_done and not ended:
            return
        if not ended and state.done != 0 and now - last_time < PLAIN_EVERY_S and state.done - last_done < max(1, state.total // 10):
            return
        self._plain_last[name] = (state.done, now)
        if state.note:
            line = f"{name}: {state.note}"
        else:
            line = f"{name}: {state.done}/{state.total} {state.unit}"
            rate = self._rate(state)
            if rate:
                line += f", {rate}"
            if ended:
                line += f", done in {human_seconds(state.seconds or 0.0)}"
            elif state.done and state.seconds:
                remaining = (state.total - state.done) * state.seconds / state.done
                line += f", ETA {human_seconds(remaining)}"
            if state.detail:
                line += f" ({state.detail})"
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def summary_lines(self) -> list[str]:
        """One line per stage: what it did and how long it took."""
        lines = []
        for stage in self.stages:
            state = self.states[stage.name]
            if state.note:
                lines.append(f"{stage.name:<9} {state.note}")
            elif state.started is not None:
                lines.append(f"{stage.name:<9} {state.done}/{state.total} {state.unit} in {human_seconds(state.seconds or 0.0)}")
        return lines


# ------------------------------------------------------------------------------------------------
# Probes: progress read from the run folder


def unit_probe(units_dir: Path, total: int) -> Probe:
    """Units done = unit manifests written (each is written after its shard is complete)."""

    def probe() -> tuple[int, int, str]:
        done = sum(1 for _ in units_dir.glob("*.parquet")) if units_dir.is_dir() else 0
        return done, total, ""

    return probe


def last_metrics(path: Path) -> dict | None:
    """The last complete line of a metrics.jsonl (reads only the file's tail)."""
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 4096))
        tail = f.read().decode("utf-8", "replace").splitlines()
    for line in reversed(tail):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def pretrain_probe(metrics_files: dict[str, Path], steps_per_method: int, complete: Callable[[str], bool]) -> Probe:
    """Steps done over every method; the detail names the method training and its current loss."""

    def probe() -> tuple[int, int, str]:
        done, detail = 0, ""
        for method, path in metrics_files.items():
            if complete(method):
                done += steps_per_method
                continue
            record = last_metrics(path)
            if record is None:
                continue
            done += min(int(record.get("step", 0)), steps_per_method)
            loss = record.get("loss")
            detail = f"{method} step {record.get('step')}" + (f", loss {loss:.4f}" if isinstance(loss, float) else "")
        return done, steps_per_method * len(metrics_files), detail

    return probe


def files_probe(paths: list[Path], describe: Callable[[Path], str] | None = None) -> Probe:
    """Jobs done = result files present; the detail names the last one that appeared."""

    def probe() -> tuple[int, int, str]:
        present = [p for p in paths if p.is_file()]
        detail = describe(max(present, key=lambda p: p.stat().st_mtime)) if present and describe else ""
        return len(present), len(paths), detail

    return probe


def generate_stage(run, started: float) -> StageProbe:
    """Units of the run's corpus; the stage ends when the merge has (re)written corpus.json."""
    from pipeline.corpus.plan import plan_units

    layout = run.layout.corpus
    paths = [layout.root / unit.unit_relpath for unit in plan_units(run.config.corpus)]
    count = files_probe(paths)

    def probe() -> tuple[int, int, str]:
        done, total, _ = count()
        merged = layout.info.is_file() and layout.info.stat().st_mtime >= started
        return (done if merged else min(done, total - 1)), total, "" if merged or done < total else "merging"

    return StageProbe("generate", "units", probe)


def pretrain_stage(run, methods: list[str]) -> StageProbe:
    from training.launch import is_complete

    cfg = run.config.pretrain
    files = {m: run.layout.pretrain(m).metrics for m in methods}
    probe = pretrain_probe(files, cfg.total_steps, lambda m: is_complete(run.layout.pretrain(m).root, cfg))
    return StageProbe("pretrain", "steps", probe)


def evaluate_stage(run, started: float, jobs: list | None = None, pending: set[str] | None = None) -> StageProbe:
    """Evaluation jobs: results already current count as done. ``jobs`` and the results still
    ``pending``: the plan when the command has made it; otherwise the run's plan
    (pipeline.stages.evaluation_jobs, made once per run) once the checkpoints it needs exist."""
    plan: dict[str, object] = {}
    if jobs is not None:
        todo = pending or set()
        plan["paths"] = [(Path(j.result), j.result in todo, f"{j.method} {j.task} seed {j.seed}") for j in jobs]

    def probe() -> tuple[int, int, str]:
        if "paths" not in plan:
            from evaluation.plan import pending_jobs
            from pipeline.stages import evaluation_jobs
            from training.methods import get_method

            evaluation = run.evaluation
            methods = [m for m in evaluation.config.methods if get_method(m).pretrained]
            if not all(run.layout.weights(m).is_file() for m in methods):
                return 0, 0, ""  # pretraining still running: plan once its weights exist
            try:  # the flow's plan when it has made it (planning opens the external datasets' files)
                jobs = evaluation_jobs(run)
                pending = {j.result for j in pending_jobs(jobs, evaluation.config, evaluation.spec)}
            except (FileNotFoundError, ValueError):
                jobs, pending = [], set()  # the evaluate stage reports the problem itself
            plan["paths"] = [(Path(j.result), j.result in pending, f"{j.method} {j.task} seed {j.seed}") for j in jobs]
        rows = plan["paths"]
        done, last, newest = 0, "", 0.0
        for path, pending, label in rows:
            if not pending:
                done += 1
            elif path.is_file() and (mtime := path.stat().st_mtime) >= started:
                done += 1
                if mtime > newest:
                    newest, last = mtime, label
        return done, len(rows), last

    return StageProbe("evaluate", "jobs", probe)
