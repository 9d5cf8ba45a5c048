"""Tuning on an equal budget: Optuna's ask/tell over Hydra launches, one study per solver (or per any plain
list), each trial an ordinary run in its own directory, the best configuration re-run on fresh seeds.

Everything lives in the sweep directory: the studies in Optuna's journal file (``optuna.journal``, safe
for several processes), every trial's run directory with its ``summary.json``, ``best/<study>.yaml`` with
the best trial's config, and ``tuning.json``, the record of it all that ``compare`` and ``report`` read.
The same command with the same ``hydra.sweep.dir`` continues a sweep that was killed: trials that were
under way run again in their own directories (continuing from their checkpoints), and the study then
asks for what is left of its budget.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from framework.configs import quoted
from framework.errors import ConfigError, check_count, require
from framework.files import atomic_file
from framework.lifecycle.rundir import LOCK, RunLock
from framework.lifecycle.status import COMPLETED, DIVERGED, FAILED, PRUNED
from framework.results import read_summary, strict_json
from framework.studies.sweeps import BEST, MANIFEST
from framework.studies.pruning import make_pruner
from framework.studies.space import SEARCH_SPACE, Space, parse_space, solver_space

JOURNAL = "optuna.journal"
SAMPLERS = ("tpe", "random", "qmc", "grid")
OBJECTIVES = ("final", "best")
NO_RESULT = "no result"
#: a run with one of these statuses is over: its trial is told, never launched again
FINISHED = (COMPLETED, DIVERGED, FAILED, PRUNED)

#: runs the given jobs (overrides each) as sweep members numbered from the second argument on
Launch = Callable[[list[list[str]], int], None]
#: the config a member with these overrides and this job number gets, and its run directory
Compose = Callable[[list[str], int], tuple[Any, Path]]


@dataclass
class TuningSettings:
    """``hydra.sweeper.*`` of the Optuna sweeper, checked (its defaults are the plugin's config schema's,
    ``OptunaSweeperConf``)."""

    n_trials: int
    n_jobs: int
    sampler: str
    sampler_seed: int
    objective: str
    rerun_seeds: list[int]
    params: dict[str, Any]
    pruner: str | None

    def check(self) -> None:
        check_count("hydra.sweeper.n_trials", self.n_trials)
        check_count("hydra.sweeper.n_jobs", self.n_jobs)
        check_count("hydra.sweeper.sampler_seed", self.sampler_seed, minimum=0)
        require(self.sampler in SAMPLERS, "hydra.sweeper.sampler", self.sampler, f"must be one of {list(SAMPLERS)}")
        require(self.objective in OBJECTIVES, "hydra.sweeper.objective", self.objective,
                f"must be one of {list(OBJECTIVES)} (the validation metric at the end, or its best value)")
        for seed in self.rerun_seeds:
            check_count("hydra.sweeper.rerun_seeds[]", seed, minimum=0)
        if self.pruner is not None:
            make_pruner(self.pruner)

    def param_overrides(self) -> list[str]:
        return [f"{key}={value}" for key, value in self.params.items()]


@dataclass
class Outcome:
    """What a trial's run directory says: its status, the objective's value, and an error if any."""

    status: str
    value: float | None = None
    error: str | None = None

    @classmethod
    def read(cls, run_dir: Path, objective: str) -> Outcome:
        try:
            summary = read_summary(run_dir)
        except (OSError, ValueError):
            return cls(NO_RESULT, error="the run wrote no summary.json")
        status = summary.get("status", FAILED)
        value = (summary.get("metric") or {}).get(objective)
        value = float(value) if value is not None else None
        if status == COMPLETED and (value is None or not math.isfinite(value)):
            return cls(FAILED, value, f"completed without a finite {objective} metric")
        return cls(status, value, summary.get("error"))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "study"


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, less its ``study.stop()`` once the grid is covered (which only works inside
    ``study.optimize``): the tuning loop caps the budget at the grid's size itself."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        pass


def _sampler(settings: TuningSettings, space: Space, seen: int) -> optuna.samplers.BaseSampler:
    """A sampler for a study that already holds ``seen`` trials: seeded so that a continued study draws
    new points, not the ones it drew before it was stopped (QMC and grid keep their place themselves)."""
    seed = settings.sampler_seed
    if settings.sampler == "grid":
        return _GridSampler(space.grid(), seed=seed)
    if settings.sampler == "qmc":  # quasi-random (Halton) search, as AlgoPerf's baselines tune
        return optuna.samplers.QMCSampler(qmc_type="halton", scramble=True, seed=seed,
                                          warn_independent_sampling=False)
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed + seen)
    return optuna.samplers.TPESampler(seed=seed + seen, constant_liar=True)


@dataclass
class Job:
    """One launch of one member: its number, its overrides and its run directory."""

    num: int
    overrides: list[str]
    run_dir: Path
    #: launch-only overrides (the trial's identity, for pruning), never part of a configuration to re-run
    extra: list[str] = field(default_factory=list)


def _all_suggested(study: optuna.Study, trial: FrozenTrial, space: Space) -> dict[str, Any]:
    """The trial's parameters, with those of ``space`` it lacks suggested now: a sweep killed inside
    ``study.ask`` leaves a trial that has some of its suggestions in the journal and not the others."""
    missing = {name: dist for name, dist in space.searched.items() if name not in trial.params}
    if not missing:
        return trial.params
    live = optuna.trial.Trial(study, trial._trial_id)
    for name, dist in missing.items():
        if isinstance(dist, optuna.distributions.FloatDistribution):
            live.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
        elif isinstance(dist, optuna.distributions.IntDistribution):
            live.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
        else:
            live.suggest_categorical(name, dist.choices)  # type: ignore[attr-defined]
    return {**trial.params, **live.params}


def _wait_while_running(run_dir: Path) -> None:
    """Wait for a run that is still under way in another process (a cluster job that outlived a killed
    tuner): its directory's lock tells."""
    if not (run_dir / LOCK).exists():
        return
    lock = RunLock(run_dir)
    if not lock.acquire():
        print(f"[tuning] {run_dir} is still running elsewhere; waiting for it", flush=True)
        while not lock.acquire():
            time.sleep(5)
    lock.release()


class Tuning:
    """Runs every study of a tuning sweep through ``launch``; see the module docstring."""

    def __init__(self, settings: TuningSettings, sweep_dir: Path, launch: Launch, compose: Compose) -> None:
        settings.check()
        self.settings = settings
        self.sweep_dir = Path(sweep_dir)
        self.launch_jobs = launch
        self.compose = compose
        self.storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(self.sweep_dir / JOURNAL)))
        self.records: dict[str, dict[str, Any]] = {}
        self._next_job = self._first_free_job()

    # -- job numbers and launches ---------------------------------------------------------------------------

    def _first_free_job(self) -> int:
        used = [-1]
        for frozen in self.storage.get_all_studies():
            study = optuna.load_study(study_name=frozen.study_name, storage=self.storage)
            used += [t.user_attrs["job"] for t in study.get_trials(deepcopy=False) if "job" in t.user_attrs]
            used += [r["job"] for r in study.user_attrs.get("reruns", {}).values()]
        return max(used) + 1

    def _new_job(self, overrides: list[str]) -> Job:
        num, self._next_job = self._next_job, self._next_job + 1
        _, run_dir = self.compose(overrides, num)
        return Job(num, overrides, run_dir)

    def _launch(self, jobs: list[Job]) -> str | None:
        """Launch ``jobs``, consecutive numbers together, at most ``n_jobs`` at once; return the launcher's
        error, if it raised one (each job's own directory then says what happened to it)."""
        jobs = sorted(jobs, key=lambda j: j.num)
        groups: list[list[Job]] = []
        for job in jobs:
            if groups and job.num == groups[-1][-1].num + 1 and len(groups[-1]) < self.settings.n_jobs:
                groups[-1].append(job)
            else:
                groups.append([job])
        error = None
        for group in groups:
            try:
                self.launch_jobs([[*j.overrides, *j.extra] for j in group], group[0].num)
            except Exception as exc:  # noqa: BLE001 - a launcher failure fails its trials, not the study
                error = f"{type(exc).__name__}: {exc}"
        return error

    # -- the studies ----------------------------------------------------------------------------------------

    def run(self, arguments: list[str]) -> dict[str, dict[str, Any]]:
        """Run (or continue) every study the overrides describe; return their records."""
        top = parse_space([*self.settings.param_overrides(), *arguments])
        lock = RunLock(self.sweep_dir)  # one tuner per sweep directory; its jobs share the journal
        if not lock.acquire():
            raise ConfigError("hydra.sweep.dir", str(self.sweep_dir), "is being tuned by another running process")
        try:
            for combo in top.study_grid():
                self._run_study(combo, top, arguments)
        finally:
            lock.release()
        return self.records

    def _study_space(self, combo: list[str], top: Space, arguments: list[str]) -> tuple[Space, Any]:
        config, _ = self.compose([*top.fixed, *combo], 0)
        defaults = solver_space(config.optimizer.get(SEARCH_SPACE), top.keys())
        space = parse_space([*defaults, *self.settings.param_overrides(), *arguments])
        space.studies = {}
        space.fixed = [*space.fixed, *combo]
        if not space.searched:
            raise ConfigError("hydra.sweeper.params", {},
                              f"nothing to search for {' '.join(combo) or 'this sweep'}: give a search space, e.g. "
                              f"'optimizer.lr=tag(log, interval(1e-4, 1e-1))', or a solver with a {SEARCH_SPACE}")
        if self.settings.sampler == "grid":
            space.grid()  # refuses a continuous key before anything runs
        return space, config

    def _open_study(self, name: str, space: Space, config: Any) -> optuna.Study:
        from hydra.utils import get_class

        problem = get_class(str(config.model._target_))
        direction = "maximize" if getattr(problem, "metric_mode", "min") == "max" else "minimize"
        identity = {"space": space.describe(), "fixed": sorted(space.fixed), "objective": self.settings.objective}
        study = optuna.create_study(storage=self.storage, study_name=name, direction=direction, load_if_exists=True)
        stored = {key: study.user_attrs.get(key) for key in identity}
        if not study.trials and not study.user_attrs:
            for key, value in identity.items():
                study.set_user_attr(key, value)
            study.set_user_attr("metric", f"val/{getattr(problem, 'metric', 'loss')}")
        elif stored != identity:
            changed = [key for key in identity if stored[key] != identity[key]]
            raise ConfigError("hydra.sweep.dir", str(self.sweep_dir),
                              f"holds study {name!r} with a different {' and '.join(changed)} "
                              f"(stored: {[stored[k] for k in changed]}); continue it with the same settings, "
                              f"or choose a new hydra.sweep.dir")
        study.sampler = _sampler(self.settings, space, len(study.trials))
        return study

    def _run_study(self, combo: list[str], top: Space, arguments: list[str]) -> None:
        name = " ".join(combo) or "study"
        space, config = self._study_space(combo, top, arguments)
        study = self._open_study(name, space, config)
        budget = self.settings.n_trials
        if self.settings.sampler == "grid":
            budget = min(budget, math.prod(len(v) for v in space.grid().values()))
        print(f"[tuning] {name}: {budget} trials, {self.settings.sampler} over {', '.join(space.searched)}; "
              f"journal {self.sweep_dir / JOURNAL}", flush=True)
        while True:
            batch = []
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if len(batch) == self.settings.n_jobs:
                    break
                job = self._again(study, trial, space)
                if job is not None:
                    batch.append((trial.number, job))
            trials = study.get_trials(deepcopy=False)
            finished = sum(t.state.is_finished() for t in trials)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            for _ in range(max(min(self.settings.n_jobs - len(batch), budget - finished - running), 0)):
                batch.append(self._ask(study, space))
            if not batch:
                break
            error = self._launch([job for _, job in batch])
            for number, job in batch:
                self._tell(study, number, job, error)
            self._record(name, study)
        self._rerun_best(name, study)
        self._record(name, study)

    def _ask(self, study: optuna.Study, space: Space) -> tuple[int, Job]:
        trial = study.ask(space.searched)
        return trial.number, self._assign(study, trial.number, trial.params, space)

    def _assign(self, study: optuna.Study, number: int, params: dict[str, Any], space: Space) -> Job:
        """A new job for trial ``number``, recorded with the trial before anything is launched."""
        job = self._new_job(space.overrides(params))
        trial_id = study.get_trials(deepcopy=False)[number]._trial_id
        job.extra = self._trial_keys(study, trial_id)
        for key, value in {"job": job.num, "overrides": job.overrides, "run_dir": self._relative(job.run_dir)}.items():
            self.storage.set_trial_user_attr(trial_id, key, value)
        return job

    def _trial_keys(self, study: optuna.Study, trial_id: int) -> list[str]:
        """With a pruner, what a trial's run needs to report to its trial (framework.studies.pruning)."""
        if self.settings.pruner is None:
            return []
        journal = quoted(str((self.sweep_dir / JOURNAL).resolve()))
        return [f"+tuning.journal={journal}", f"+tuning.study={quoted(study.study_name)}",
                f"+tuning.trial_id={trial_id}", f"+tuning.pruner={self.settings.pruner}"]

    def _again(self, study: optuna.Study, trial: FrozenTrial, space: Space) -> Job | None:
        """A trial left under way by a stopped sweep: its job again (a new one if it was stopped before its
        launch), or None if its run already has a result, which is then told."""
        attrs = trial.user_attrs
        if "job" not in attrs:
            return self._assign(study, trial.number, _all_suggested(study, trial, space), space)
        job = Job(attrs["job"], list(attrs["overrides"]), self.sweep_dir / attrs["run_dir"],
                  self._trial_keys(study, trial._trial_id))
        _wait_while_running(job.run_dir)
        if Outcome.read(job.run_dir, self.settings.objective).status in FINISHED:
            self._tell(study, trial.number, job, None)
            return None
        return job

    def _tell(self, study: optuna.Study, number: int, job: Job, launch_error: str | None) -> None:
        outcome = Outcome.read(job.run_dir, self.settings.objective)
        trial_id = study.get_trials(deepcopy=False)[number]._trial_id
        self.storage.set_trial_user_attr(trial_id, "status", outcome.status)
        if outcome.error or (launch_error and outcome.status == NO_RESULT):
            self.storage.set_trial_user_attr(trial_id, "error", outcome.error if outcome.status != NO_RESULT
                                             else f"{outcome.error}; launcher: {launch_error}")
        if outcome.status == COMPLETED:
            study.tell(number, outcome.value)
        elif outcome.status == PRUNED:  # Optuna takes the last reported value as the trial's
            study.tell(number, state=TrialState.PRUNED)
        elif outcome.status == DIVERGED:  # the worst value: samplers learn to stay away, best never picks it
            study.tell(number, math.inf if study.direction == optuna.study.StudyDirection.MINIMIZE else -math.inf)
        else:
            study.tell(number, state=TrialState.FAIL)

    # -- the best configuration, re-run on fresh seeds ---------------------------------------------------------

    def _best(self, study: optuna.Study) -> FrozenTrial | None:
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.user_attrs.get("status") == COMPLETED]
        if not done:
            return None
        pick = min if study.direction == optuna.study.StudyDirection.MINIMIZE else max
        return pick(done, key=lambda t: t.value)

    def _rerun_best(self, name: str, study: optuna.Study) -> None:
        best = self._best(study)
        if best is None:
            print(f"[tuning] {name}: no trial completed, nothing to re-run", flush=True)
            return
        self._write_best(name, study, best)
        reruns = dict(study.user_attrs.get("reruns", {}))
        jobs = []
        for seed in self.settings.rerun_seeds:
            known = reruns.get(str(seed))
            if known and known["trial"] == best.number:
                job = Job(known["job"], known["overrides"], self.sweep_dir / known["run_dir"])
                if Outcome.read(job.run_dir, self.settings.objective).status in FINISHED:
                    continue
            else:
                job = self._new_job([*best.user_attrs["overrides"], f"seed={seed}"])
                reruns[str(seed)] = {"trial": best.number, "job": job.num, "overrides": job.overrides,
                                     "run_dir": self._relative(job.run_dir)}
                study.set_user_attr("reruns", reruns)
            jobs.append(job)
        if jobs:
            print(f"[tuning] {name}: re-running trial {best.number} on seeds "
                  f"{', '.join(str(s) for s in self.settings.rerun_seeds)}", flush=True)
            self._launch(jobs)

    def _write_best(self, name: str, study: optuna.Study, best: FrozenTrial) -> Path:
        run_dir = self.sweep_dir / best.user_attrs["run_dir"]
        try:
            config = read_summary(run_dir).get("config")
        except (OSError, ValueError):
            config = None
        path = self.sweep_dir / BEST / f"{_slug(name)}.yaml"
        path.parent.mkdir(exist_ok=True)
        record = {"study": name, "trial": best.number, "metric": study.user_attrs.get("metric"),
                  self.settings.objective: best.value, "params": best.params,
                  "overrides": best.user_attrs["overrides"], "run_dir": best.user_attrs["run_dir"], "config": config}
        with atomic_file(path) as out:
            out.write(f"# the best trial of study {name!r}; run it again with: python run.py "
                      f"{' '.join(best.user_attrs['overrides'])}\n")
            yaml.safe_dump(strict_json(record), out, sort_keys=False)
        return path

    # -- the record -------------------------------------------------------------------------------------------

    def _relative(self, path: Path) -> str:
        try:
            return str(Path(path).resolve().relative_to(self.sweep_dir.resolve()))
        except ValueError:
            return str(path)

    def _record(self, name: str, study: optuna.Study) -> None:
        best = self._best(study)
        trials = [{"number": t.number, "state": t.state.name, "status": t.user_attrs.get("status"),
                   "value": t.value, "params": t.params,
                   "job": t.user_attrs.get("job"), "run_dir": t.user_attrs.get("run_dir"),
                   "error": t.user_attrs.get("error")} for t in study.get_trials(deepcopy=False)]
        reruns = []
        for seed, rerun in study.user_attrs.get("reruns", {}).items():
            if best is not None and rerun["trial"] == best.number:
                outcome = Outcome.read(self.sweep_dir / rerun["run_dir"], self.settings.objective)
                reruns.append({"seed": int(seed), "run_dir": rerun["run_dir"], "status": outcome.status,
                               "value": outcome.value})
        self.records[name] = {
            "name": name, "direction": study.direction.name.lower(), "metric": study.user_attrs.get("metric"),
            "objective": self.settings.objective, "space": study.user_attrs.get("space"),
            "fixed": study.user_attrs.get("fixed"), "n_trials": self.settings.n_trials, "trials": trials,
            "best": None if best is None else {
                "number": best.number, "value": best.value, "params": best.params,
                "overrides": best.user_attrs["overrides"], "run_dir": best.user_attrs["run_dir"],
                "config": f"{BEST}/{_slug(name)}.yaml"},
            "reruns": sorted(reruns, key=lambda r: r["seed"]),
        }
        manifest = {"schema_version": 1, "journal": JOURNAL, "sampler": self.settings.sampler,
                    "studies": list(self.records.values())}
        with atomic_file(self.sweep_dir / MANIFEST) as out:
            out.write(json.dumps(strict_json(manifest), indent=2, allow_nan=False))
