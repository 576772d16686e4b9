"""The hyperparameter intervention: an Optuna study over the project's data and model family.

TPE sampler, median pruning, a trial budget and a time budget. Every trial trains one real
PyTorch model on the baseline's train split and is scored by its dev error; it reports the dev
error four times during training, so the median pruner stops the hopeless ones early. Each
finished (or pruned) trial is sent out as an event carrying its parameters and value: the job
records it as a Run and keeps it with the job, which is what makes a search resumable, since
the trials already run are handed to the next study (``SearchOptions.done``) instead of being
repeated. The study itself is in memory: this runs in the job's child, which has no database.

When the budget is spent, the best parameters train the baseline again (train, train-dev,
dev and test errors), so the project can be diagnosed again from that run.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from mlexec_app.diagnostics import baseline as baseline_mod
from mlexec_app.diagnostics.data import Dataset
from mlexec_app.diagnostics.networks import ModelSpec, build_model
from mlexec_app.diagnostics.progress import Progress
from mlexec_app.diagnostics.runtime import device, require, torch_module
from mlexec_app.diagnostics.training import TrainConfig, standardize_stats, train_epochs

#: name -> (kind, low, high): "log" floats, "float" floats, "int" integers.
DEFAULT_SPACE: dict[str, tuple[str, float, float]] = {
    "lr": ("log", 1e-3, 5e-2),
    "weight_decay": ("log", 1e-4, 3e-1),
    "hidden": ("int", 16, 256),
    "dropout": ("float", 0.0, 0.5),
    "epochs": ("int", 8, 40),
}
#: How many times a trial reports its dev error to the pruner while it trains.
REPORTS = 4


@dataclass(frozen=True)
class SearchOptions:
    trials: int = 20
    #: Seconds for the whole search (Optuna stops starting trials after this).
    timeout: float = 60.0
    seed: int = 0
    #: Subset of DEFAULT_SPACE's names to search (the rest keep the base model's values).
    params: tuple[str, ...] = tuple(DEFAULT_SPACE)
    #: Trials already run by an earlier, interrupted search: [{"params", "value", "state"}].
    done: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if (
            not isinstance(self.trials, int)
            or isinstance(self.trials, bool)
            or not (1 <= self.trials <= 1000)
        ):
            raise ValueError("search.trials is a whole number from 1 to 1000")
        if not isinstance(self.timeout, int | float) or not (1 <= self.timeout <= 86_400):
            raise ValueError("search.timeout is a number of seconds from 1 to 86400")
        unknown = sorted(set(self.params) - set(DEFAULT_SPACE))
        if unknown or not self.params:
            raise ValueError(f"search.params: choose from {', '.join(DEFAULT_SPACE)}")
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "done", tuple(self.done))

    @classmethod
    def from_params(cls, raw: Any) -> SearchOptions:
        raw = dict(raw or {})
        for internal in ("done", "resume", "intervention"):
            raw.pop(internal, None)
        return cls(**raw)


def _distributions(names: tuple[str, ...]) -> dict[str, Any]:
    optuna = require("optuna")
    out = {}
    for name in names:
        kind, low, high = DEFAULT_SPACE[name]
        if kind == "int":
            out[name] = optuna.distributions.IntDistribution(int(low), int(high))
        else:
            out[name] = optuna.distributions.FloatDistribution(low, high, log=kind == "log")
    return out


def _apply(params: dict[str, Any], spec: ModelSpec, config: TrainConfig) -> tuple[Any, Any]:
    spec_changes: dict[str, Any] = {}
    if "hidden" in params and spec.kind == "mlp":
        spec_changes["hidden"] = (int(params["hidden"]),)
    if "dropout" in params and spec.kind == "mlp":
        spec_changes["dropout"] = float(params["dropout"])
    train_changes: dict[str, Any] = {
        k: (int(v) if k == "epochs" else float(v))
        for k, v in params.items()
        if k in ("lr", "weight_decay", "epochs")
    }
    return replace(spec, **spec_changes), replace(config, **train_changes)


def run_search(
    data: Dataset,
    options: SearchOptions | None = None,
    *,
    spec: ModelSpec | None = None,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the study; returns the trials, the best one and the baseline it trains again."""
    optuna = require("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    options = options or SearchOptions()
    spec, config = spec or ModelSpec(), config or TrainConfig()
    progress = progress or Progress()
    rows = baseline_mod.split_rows(data.y, config.seed)
    mask = np.zeros(len(data.y), bool)
    mask[rows["train"]] = True
    dev = rows["dev"]
    distributions = _distributions(options.params)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=options.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )
    for old in options.done:
        try:
            study.add_trial(
                optuna.trial.create_trial(
                    params={k: v for k, v in old["params"].items() if k in distributions},
                    distributions={
                        k: distributions[k] for k in old["params"] if k in distributions
                    },
                    value=old.get("value"),
                    state=optuna.trial.TrialState[old.get("state", "COMPLETE")],
                    intermediate_values={},
                )
            )
        except (KeyError, ValueError, TypeError):
            continue  # a trial that no longer fits the space is not carried over
    trials: list[dict[str, Any]] = [dict(t) for t in options.done]
    remaining = max(0, options.trials - len(trials))
    progress.plan(["search", "best"])
    progress.start_stage("search")
    started = time.monotonic()

    torch = torch_module()
    on = device()
    mean, scale = (a[0] for a in standardize_stats(data.X, mask[None]))
    xs = torch.from_numpy(((data.X - mean) / scale).astype(np.float32)).to(on)
    ys = torch.from_numpy(data.y.astype(np.int64)).to(on)
    train_rows = torch.from_numpy(rows["train"]).to(on)
    dev_rows = torch.from_numpy(dev).to(on)

    def dev_error(model: Any) -> float:
        model.eval()
        with torch.no_grad():
            wrong = model(xs[dev_rows]).argmax(1) != ys[dev_rows]
        model.train()
        return float(wrong.float().mean())

    def objective(trial: Any) -> float:
        params = {name: trial._suggest(name, d) for name, d in distributions.items()}
        trial_spec, trial_config = _apply(params, spec, config)
        torch.manual_seed(trial_config.seed + trial.number)
        model = build_model(trial_spec, data.X.shape[1], data.n_classes, data.image_shape).to(on)
        checkpoints = sorted(
            {max(1, round(trial_config.epochs * (k + 1) / REPORTS)) for k in range(REPORTS)}
        )
        last = {"error": 1.0}

        def tick(done: int, total: int) -> None:
            progress.emit({"step": "epoch", "trial": trial.number, "done": done, "total": total})
            if done in checkpoints:
                last["error"] = dev_error(model)
                trial.report(last["error"], checkpoints.index(done))
                if done < total and trial.should_prune():
                    raise optuna.TrialPruned()

        try:
            train_epochs(model, xs[train_rows], ys[train_rows], trial_config, tick=tick)
        except optuna.TrialPruned:
            _record(trials, trial.number, params, last["error"], "PRUNED", progress, remaining)
            raise
        _record(trials, trial.number, params, last["error"], "COMPLETE", progress, remaining)
        return last["error"]

    if remaining:
        # A Cancelled raised by a progress check passes through Optuna and stops the study.
        study.optimize(objective, n_trials=remaining, timeout=options.timeout, catch=())
    complete = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    if not complete:
        raise RuntimeError("The search completed no trial within its budget.")
    best = min(complete, key=lambda t: (t["value"], t["number"]))
    progress.start_stage("best")
    best_spec, best_config = _apply(best["params"], spec, config)
    rerun = baseline_mod.baseline_run(data, spec=best_spec, config=best_config, progress=progress)
    return {
        "trials": trials,
        "completed": len(complete),
        "pruned": sum(t["state"] == "PRUNED" for t in trials),
        "seconds": round(time.monotonic() - started, 2),
        "best": {
            "number": best["number"],
            "params": best["params"],
            "dev_error": best["value"],
            "spec": best_spec.to_dict(),
            "config": best_config.to_dict(),
        },
        "baseline": rerun.to_dict(),
        "options": {**asdict(options), "done": len(options.done)},
    }


def _record(
    trials: list[dict[str, Any]],
    number: int,
    params: dict[str, Any],
    value: float,
    state: str,
    progress: Progress,
    budget: int,
) -> None:
    clean = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in params.items()}
    entry = {"number": number, "params": clean, "value": round(value, 4), "state": state}
    trials.append(entry)
    if not math.isfinite(value):
        entry["value"] = None
    progress.stage_step("trial", len(trials), max(budget, 1), trial=entry)
