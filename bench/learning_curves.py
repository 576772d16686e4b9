"""Benchmark: how well learning curves predict, and how long the full diagnosis and a search take.

Run from the repository root::

    .venv/bin/python -m bench learning_curves                  # everything, print the figures
    .venv/bin/python -m bench learning_curves --write          # and record them in bench/README.md
    .venv/bin/python -m bench learning_curves --only accuracy  # or: time, search
    .venv/bin/python -m bench learning_curves --only accuracy --datasets digits,wine --seeds 0
        # a quick look while iterating (never --write a partial run)
    .venv/bin/python -m bench learning_curves --write --held-out   # and the held-out seeds

**Accuracy.** For each dataset (scikit-learn's digits, breast cancer and wine, and
``make_classification`` variants whose label noise sets a known Bayes-error floor) and each
fraction f of it (a stratified random subset, three seeds each), the learning curve is measured
on the subset exactly as a diagnostic job measures it (5 folds x 6 sizes, in as many passes of
the folds as its rows call for: ``repeats_for``, 1 from 1,200 rows) and asked for the dev
error at the training size the *whole* dataset gives (1/f times the data). Then the whole
dataset is measured by the same procedure, and its dev error at that size is the truth. We
report the mean absolute error of the prediction and how often the truth lies in the 80%
interval. At f = 0.1 the truth is the dev error at ten times the data, which is what the
verdict is about: where the real gain is clearly material (at least 1.5 times the threshold)
the right verdict is "more data will help", where it is clearly not (at most half the
threshold) "more data won't help"; other cases are not counted. Each verdict line also gives
the measured fall over the last doubling that the gain's lower end rests on.

**Held-out seeds.** ``--held-out`` also measures seeds 3-5 of every dataset and fraction and
reports them apart (mean absolute error, interval coverage, verdicts): the method is chosen
on seeds 0-2, so these are the check that a change did not just fit those fifteen subsets.

**Time.** The full diagnosis (label issues, learning curve, baseline, slices) of the digits with
180 labels flipped, in a warm process and as a cold process; and a 20-trial hyperparameter
search on the same data.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings_mlexec_only")

BEGIN, END = "<!-- mlexec-learning-curves:begin -->", "<!-- mlexec-learning-curves:end -->"
FRACTIONS = (0.1, 0.25, 0.5)
SEEDS = (0, 1, 2)
#: Seeds never looked at while choosing the method (``--held-out``).
HELD_OUT = (3, 4, 5)


def datasets() -> dict[str, Any]:
    """name -> Dataset, each small enough to measure whole in seconds."""
    from sklearn.datasets import load_breast_cancer, load_wine, make_classification

    from mlexec_app.diagnostics.data import Dataset, load_demo

    def wrap(name: str, X: np.ndarray, y: np.ndarray) -> Dataset:
        classes = [str(c) for c in sorted(set(y.tolist()))]
        return Dataset(np.asarray(X, np.float32), np.asarray(y, np.int64), classes, name)

    out = {"digits": load_demo("digits")}
    bc = load_breast_cancer()
    out["breast_cancer"] = wrap("breast_cancer", bc.data, bc.target)
    wine = load_wine()
    out["wine"] = wrap("wine", wine.data, wine.target)
    # flip_y relabels that share of rows at random: Bayes error >= flip_y * (K - 1) / K.
    for name, kwargs in {
        "synth_clean": {"n_classes": 3, "flip_y": 0.0, "class_sep": 1.5},
        "synth_noise10": {"n_classes": 3, "flip_y": 0.1, "class_sep": 2.0},
        "synth_hard": {"n_classes": 2, "flip_y": 0.05, "class_sep": 0.6},
    }.items():
        X, y = make_classification(
            n_samples=3000, n_features=20, n_informative=6, n_redundant=4,
            random_state=7, **kwargs,
        )  # fmt: skip
        out[name] = wrap(name, X, y)
    return out


def stratified_subset(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        rows.append(rng.choice(members, max(2, round(len(members) * fraction)), replace=False))
    return np.sort(np.concatenate(rows))


def accuracy(
    names: tuple[str, ...] | None = None,
    fractions: tuple[float, ...] = FRACTIONS,
    seeds: tuple[int, ...] = SEEDS,
) -> dict[str, Any]:
    from mlexec_app.diagnostics.learning_curve import (
        CANT_TELL,
        WILL_HELP,
        WONT_HELP,
        bootstrap,
        judge,
        material_gain,
        measure,
    )

    cases, verdicts, seconds, skipped = [], [], [], []
    for name, data in datasets().items():
        if names and name not in names:
            continue
        full_sizes, _, full_dev, _ = measure(data)
        truth_size = full_sizes[-1]
        truth = float(full_dev[:, -1].mean())
        for fraction in fractions:
            for seed in seeds:
                sub = data.subset(stratified_subset(data.y, fraction, seed))
                started = time.perf_counter()
                sizes, train, dev, wrong = measure(sub)
                boot = bootstrap(
                    sizes, dev, dev_rows=len(sub.y), train_error=float(train.mean(0)[-1]),
                    wrong=wrong,
                )  # fmt: skip
                curve = judge(sizes, train.mean(0), dev, None, dev_rows=len(sub.y), wrong=wrong)
                seconds.append(time.perf_counter() - started)
                if boot is None:  # under three training sizes: nothing to extrapolate
                    skipped.append(f"{name} at {fraction}")
                    continue
                pred = boot.predicted(truth_size)
                cases.append(
                    {
                        "dataset": name, "fraction": fraction, "seed": seed,
                        "predicted": pred.value, "low": pred.low, "high": pred.high,
                        "truth": truth, "inside": pred.low <= truth <= pred.high,
                        "error": abs(pred.value - truth), "passes": len(wrong),
                    }
                )  # fmt: skip
                if fraction != 0.1:
                    continue
                current = float(dev[:, -1].mean())
                real_gain, floor = current - truth, material_gain(current)
                clear = (
                    WILL_HELP
                    if real_gain >= 1.5 * floor
                    else WONT_HELP
                    if real_gain <= 0.5 * floor
                    else None
                )
                verdicts.append(
                    {
                        "dataset": name, "seed": seed, "verdict": curve.verdict, "truth": clear,
                        "gain": real_gain, "predicted_gain": curve.gain,
                        "tell": curve.tell_factor, "size": sizes[-1], "fall": curve.fall,
                        "right": clear is not None and curve.verdict == clear,
                        "abstained": clear is not None and curve.verdict == CANT_TELL,
                    }
                )  # fmt: skip
        done = [c for c in cases if c["dataset"] == name]
        print(
            f"  {name}: MAE {np.mean([c['error'] for c in done]):.3f}, inside "
            f"{sum(c['inside'] for c in done)}/{len(done)}",
            flush=True,
        )
    return {"cases": cases, "verdicts": verdicts, "seconds": seconds, "skipped": skipped}


def time_diagnosis() -> dict[str, Any]:
    from bench.mlexec_label_issues import noisy_digits
    from mlexec_app.diagnostics.pipeline import Plan, run_diagnostics

    data, _ = noisy_digits()
    run_diagnostics(data.subset(np.arange(300)), Plan(diagnostics=("learning_curve",)))  # warm-up
    load = os.getloadavg()[0]
    started = time.perf_counter()
    report = run_diagnostics(data, Plan(target_error=0.02))
    warm = time.perf_counter() - started
    load = max(load, os.getloadavg()[0])
    cpu = report["cpu_timings"]
    # On two idle cores the wall time is the longer of the two threads plus the rest.
    critical = max(cpu.get("label_issues", 0), cpu.get("learning_curve", 0)) + sum(
        v for k, v in cpu.items() if k not in ("label_issues", "learning_curve")
    )
    code = (
        "import bench.mlexec_label_issues as b; d, _ = b.noisy_digits(); "
        "from mlexec_app.diagnostics.pipeline import Plan, run_diagnostics; "
        "run_diagnostics(d, Plan(target_error=0.02))"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    cold = time.perf_counter() - started
    return {
        "warm": warm, "cold": cold, "timings": report["timings"], "report": report,
        "cpu": cpu, "critical": critical, "load": load,
    }  # fmt: skip


def time_search(trials: int = 20) -> dict[str, Any] | None:
    try:
        from mlexec_app.diagnostics.search import SearchOptions, run_search
    except ImportError:
        return None
    from bench.mlexec_label_issues import noisy_digits

    data, _ = noisy_digits()
    started = time.perf_counter()
    result = run_search(data, SearchOptions(trials=trials, timeout=600))
    return {"seconds": time.perf_counter() - started, "result": result}


def body(acc: dict | None, diag: dict | None, search: dict | None) -> str:
    lines: list[str] = []
    load = os.getloadavg()
    lines.append(
        f"Machine: {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} (1 / 5 / 15 min) when the figures were written."
    )
    if acc:
        held = [c for c in acc["cases"] if c["seed"] in HELD_OUT]
        held_verdicts = [v for v in acc["verdicts"] if v["seed"] in HELD_OUT]
        acc = {
            **acc,
            "cases": [c for c in acc["cases"] if c["seed"] not in HELD_OUT],
            "verdicts": [v for v in acc["verdicts"] if v["seed"] not in HELD_OUT],
        }
        cases = acc["cases"]
        mae = float(np.mean([c["error"] for c in cases]))
        inside = float(np.mean([c["inside"] for c in cases]))
        lines += [
            "",
            "| learning-curve extrapolation to the whole dataset | measured | goal |",
            "| --- | --- | --- |",
            f"| mean absolute error of the predicted dev error ({len(cases)} cases) | "
            f"{mae:.3f} | ≤ 0.02: {'met' if mae <= 0.02 else 'not met'} |",
            f"| truth inside the 80% interval | {inside:.0%} | ≥ 80%: "
            f"{'met' if inside >= 0.8 else 'not met'} |",
        ]
        verdicts = acc["verdicts"]
        right, abstained, wrong, clear = _tally(verdicts)
        lines.append(
            f"| verdict at f = 0.1 where the truth is clear ({clear} of {len(verdicts)}) | "
            f"{right} right, {abstained} can't tell, {wrong} wrong | all right: "
            f"{'met' if right == clear else 'not met'} |"
        )
        if held:
            h_right, h_abstained, h_wrong, h_clear = _tally(held_verdicts)
            lines += [
                f"| held-out seeds 3-5: mean absolute error ({len(held)} cases) | "
                f"{np.mean([c['error'] for c in held]):.3f} | (never used to choose) |",
                f"| held-out seeds 3-5: truth inside the 80% interval | "
                f"{np.mean([c['inside'] for c in held]):.0%} | |",
                f"| held-out seeds 3-5: verdicts where the truth is clear ({h_clear} of "
                f"{len(held_verdicts)}) | {h_right} right, {h_abstained} can't tell, {h_wrong} "
                "wrong | |",
            ]
        lines += [
            "",
            "| dataset | fraction | passes of the 5 folds | MAE | inside 80% interval |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name in dict.fromkeys(c["dataset"] for c in cases):
            for fraction in sorted({c["fraction"] for c in cases if c["dataset"] == name}):
                group = [c for c in cases if c["dataset"] == name and c["fraction"] == fraction]
                lines.append(
                    f"| {name} | {fraction} | {group[0]['passes']} | "
                    f"{np.mean([c['error'] for c in group]):.3f} | "
                    f"{sum(c['inside'] for c in group)}/{len(group)} |"
                )
        if acc["skipped"]:
            groups = dict.fromkeys(acc["skipped"])
            lines += [
                "",
                "Skipped (fewer than three training sizes, nothing to extrapolate): "
                + ", ".join(f"{g} ({acc['skipped'].count(g)} seeds)" for g in groups)
                + ".",
            ]
        lines += ["", "Verdicts at f = 0.1 (real gain = dev error now minus at 10x the data):", ""]
        for v in verdicts + held_verdicts:
            lines.append(
                f"- {v['dataset']} seed {v['seed']}: {v['verdict']} (real gain {v['gain']:+.3f}, "
                f"predicted {v['predicted_gain']['value']:+.3f} "
                f"[{v['predicted_gain']['low']:+.3f}, {v['predicted_gain']['high']:+.3f}]; "
                f"clear truth: {v['truth'] or 'not clear'})"
                + (
                    f"; measured fall {v['fall']['value']:+.3f} (at least "
                    f"{v['fall']['low']:+.3f}) from {v['fall']['start']} to {v['fall']['end']}"
                    if v.get("fall")
                    else ""
                )
                + (
                    f"; would tell at about {v['tell']:g}x its {v['size']} training examples"
                    if v["tell"]
                    else ""
                )
            )
    if diag:
        goal = "met" if diag["warm"] <= 10 else "not met"
        lines += [
            "",
            "| time | measured | goal |",
            "| --- | --- | --- |",
            f"| full diagnosis of the noisy digits, warm | {diag['warm']:.1f} s | ≤ 10 s: {goal} |",
            f"| the same as a cold process (imports included) | {diag['cold']:.1f} s | — |",
            f"| CPU time of the longer thread plus the rest (what two idle cores would "
            f"take, an estimate) | {diag['critical']:.1f} s | — |",
        ]
        if search:
            goal = "met" if search["seconds"] <= 60 else "not met"
            lines.append(
                f"| 20-trial hyperparameter search on the same data | {search['seconds']:.1f} s "
                f"| ≤ 60 s: {goal} |"
            )
        lines += [
            "",
            "Per diagnostic (warm): "
            + ", ".join(f"{k} {v:.1f} s" for k, v in diag["timings"].items())
            + " (label issues and the learning curve side by side, in two threads); CPU time: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in diag["cpu"].items())
            + f"; highest 1-minute load average during the warm run {diag['load']:.1f}"
            + f". Learning-curve verdict: {diag['report']['learning_curve']['verdict']} "
            f"({diag['report']['learning_curve']['reason']})",
        ]
    if search:
        best = search["result"]["best"]
        lines += [
            "",
            f"Search: {search['result']['completed']} trials completed, "
            f"{search['result']['pruned']} pruned; best dev error {best['dev_error']:.3f} with "
            f"{best['params']}.",
        ]
    return "\n".join(lines)


def _tally(verdicts: list[dict[str, Any]]) -> tuple[int, int, int, int]:
    """Right, can't tell, wrong, and how many had a clear truth."""
    clear = [v for v in verdicts if v["truth"]]
    right = sum(v["right"] for v in clear)
    abstained = sum(v["abstained"] for v in clear)
    return right, abstained, len(clear) - right - abstained, len(clear)


def write_readme(text_body: str, command: str) -> None:
    path = ROOT / "bench" / "README.md"
    text = path.read_text()
    section = (
        f"{BEGIN}\n## mlexec learning curves, diagnosis time, hyperparameter search\n\n"
        f"Command: `{command}` (recorded "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).\n\n{text_body}\n{END}"
    )
    if BEGIN in text:
        text = re.sub(
            re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S
        )
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--write", action="store_true", help="record the figures in bench/README.md"
    )
    parser.add_argument("--only", choices=("accuracy", "time", "search"), default=None)
    parser.add_argument("--datasets", default="", help="comma-separated subset, e.g. digits,wine")
    parser.add_argument("--seeds", default="", help="comma-separated subset of 0,1,2")
    parser.add_argument(
        "--held-out", action="store_true", help="also measure seeds 3-5 and report them apart"
    )
    parser.add_argument("--fractions", default="", help="comma-separated subset of 0.1,0.25,0.5")
    args = parser.parse_args()
    partial = bool(args.datasets or args.seeds or args.fractions)
    if args.write and partial:
        parser.error("--write records the whole benchmark: drop --datasets, --seeds, --fractions")
    subset = {
        "names": tuple(args.datasets.split(",")) if args.datasets else None,
        "fractions": tuple(float(f) for f in args.fractions.split(","))
        if args.fractions
        else FRACTIONS,
        "seeds": tuple(int(s) for s in args.seeds.split(",")) if args.seeds else SEEDS,
    }
    if args.held_out:
        subset["seeds"] = tuple(subset["seeds"]) + HELD_OUT
    import django

    django.setup()
    acc = accuracy(**subset) if args.only in (None, "accuracy") else None
    diag = time_diagnosis() if args.only in (None, "time") else None
    search = time_search() if args.only in (None, "search", "time") else None
    text = body(acc, diag, search)
    print(text)
    if args.write:
        command = ".venv/bin/python -m bench learning_curves --write"
        command += " --held-out" if args.held_out else ""
        write_readme(text, command + (f" --only {args.only}" if args.only else ""))


if __name__ == "__main__":
    main()
