"""Model selection: every candidate cross-validated on TRAIN rows, scored on
the project's primary metric from its out-of-fold predictions, within a
time budget; then the chosen one fitted on all TRAIN rows.

Out-of-fold predictions (each row predicted by the fold that did not see it)
let one pass give every metric of the task, so the leaderboard shows the
candidates on the primary metric and on the usual others, and a project whose
primary metric is accuracy or MAE is selected on that, not on a proxy.

Boosted trees stop early on rows held out of each fold's training part (never
on the rows they are scored on); the chosen one is then fitted on all TRAIN
rows for the mean of the folds' best round counts, scaled up a little for
the larger training set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minimlops.ml import ensemble
from minimlops.ml.candidates import PATIENCE, Candidate, Ignoring, candidates, lightgbm, threads

logger = logging.getLogger("minimlops.train")
Progress = Callable[[str, int, int], None]
SELECTION_SAMPLE = 30_000  # rows cross-validation uses on big data sets
FEW_FOLDS_FROM = 10_000  # rows from which 3 folds do (each scores 3,000+ rows)
EARLY_STOPPING_SHARE = 0.15  # of a fold's training rows, held out to stop boosting
ROUNDS_SCALE = 1.15  # the final fit sees ~1/(1 - share) x (folds / (folds - 1)) more rows
# a boosting round counts as an improvement only when it lowers the held-out
# loss by MIN_GAIN of a know-nothing model's loss over sqrt(held-out rows):
# on ~20 held-out rows (a 150-row table) log loss otherwise keeps inching down
# as the probabilities sharpen, for 1,400+ rounds that cost most of the budget
# and make the served model overconfident (measured on scikit-learn's wine:
# 1,423 -> 441 rounds, its cross-validation 4x faster, TEST log loss 0.21 -> 0.16);
# on 20,000 rows the threshold is ~1e-4 and the round counts barely move
MIN_GAIN = 0.005
SELECTION_SHARE = 0.6  # of the budget: later candidates start only before this much is spent
# MINIMLOPS_TRAINING_BUDGET, when set, is the budget. Unset, every candidate is
# tried unless its family's last timing says it would take selection past
# BUDGET_MAX_S: a table takes what its candidates need (measured, all candidates
# on 2 cores: the Titanic example ~2 s, 14,000 rows x 161 features ~10 s,
# 21,000 rows with class weights tried ~16 s), where a fixed 30 s once skipped
# the last forest of the last.
BUDGET_MAX_S = 120.0
UNSET = "unset: every candidate that fits in it"
# small tables: folds of ~100 rows make one cross-validation's ranking noisy
# (on the Titanic example one row moves accuracy by 0.0016); their folds are
# drawn REPEATS times and every candidate is scored on all of them
REPEAT_BELOW = 1_000
REPEATS = 3


@dataclass
class Selection:
    """What selection did: the chosen candidate, and every candidate's scores."""

    chosen: Candidate
    rounds: int | None  # boosted trees: the count the final fit uses
    metric: str
    direction: str
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    class_weight: dict[str, Any] = field(default_factory=dict)  # the imbalance decision
    folds: int = 0
    repeats: int = 1  # cross-validations with folds drawn anew (small tables)
    rows: int = 0  # rows cross-validated (a sample on big data sets)
    oof: np.ndarray | None = field(default=None, repr=False)  # the chosen one's out-of-fold outputs
    oof_y: np.ndarray | None = field(default=None, repr=False)  # and their labels
    folds_by: str = "random"  # or "time" (expanding windows), "group" (grouped folds)
    budget_s: float = BUDGET_MAX_S  # the seconds selection could take
    budget_from: str = UNSET  # or "set" (MINIMLOPS_TRAINING_BUDGET)
    seconds: float = 0.0  # what cross-validating the candidates (and the ensemble) took
    # a weighted ensemble served instead of ``chosen`` when its cross-fitted figure
    # beats it: (candidate, round count, weight) per member
    ensemble: list[tuple[Candidate, int | None, float]] = field(default_factory=list)
    steps: int = 0  # the training log's steps: each candidate cross-validated, then the fit
    # the one-standard-error rule's pass-over: the best by cross-validation, the
    # chosen (simpler) one's mean loss a row above it, and that gap's standard error
    simpler_than: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """What is served: ``ensemble`` or the chosen candidate's name."""
        return "ensemble" if self.ensemble else self.chosen.name

    def describe(self) -> str:
        """The served model's settings, or the ensemble's members and weights."""
        if self.ensemble:
            return " + ".join(f"{w:.2f} {c.name}" for c, _, w in self.ensemble)
        return self.chosen.describe()


def draw_folds(
    task: str,
    y: np.ndarray,
    folds: int,
    seed: int,
    order: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cross-validation folds over positions of ``y``: by expanding windows in
    time (``order``: each fold trains on every row before the rows it scores;
    the oldest block is only trained on), by group (``groups``: a group's rows
    in one fold), else shuffled (stratified for classification; also when
    every row has the same time). Also what is fitted out of fold before
    selection runs is fitted on them (target encodings: ``ml.encoding``)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if order is not None and len(np.unique(order)) > 1:
        return _time_folds(order, folds)
    if groups is not None:
        return _group_folds(task, y, groups, folds, seed)
    if task == "regression":
        if len(y) < 4:
            raise ValueError(f"training needs at least 4 rows; TRAIN has {len(y)}")
        cv: Any = KFold(n_splits=max(2, min(folds, len(y) // 2)), shuffle=True, random_state=seed)
        return list(cv.split(np.zeros(len(y))))
    counts = np.bincount(y)
    smallest = int(counts[counts > 0].min())
    cv = StratifiedKFold(n_splits=max(2, min(folds, smallest)), shuffle=True, random_state=seed)
    return list(cv.split(np.zeros(len(y)), y))


def _time_folds(order: np.ndarray, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` expanding windows over rows sorted by time; rows tied in time
    stay on one side (a window never scores a row as old as one it trained on)."""
    index = np.argsort(order, kind="stable")
    t = order[index]
    n = len(t)
    if n < 4:
        raise ValueError(f"training needs at least 4 rows; TRAIN has {n}")
    cuts = sorted(
        {int(np.searchsorted(t, t[min(n - 1, n * k // (folds + 1))])) for k in range(1, folds + 1)}
    )
    edges = [c for c in cuts if 0 < c < n] + [n]
    out = [
        (np.sort(index[:a]), np.sort(index[a:b])) for a, b in zip(edges, edges[1:], strict=False)
    ]
    if not out:
        raise ValueError(
            "the TRAIN rows have too few distinct times to validate in time order "
            "(every row has the same time)"
        )
    return out


def _group_folds(
    task: str, y: np.ndarray, groups: np.ndarray, folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds that keep each group's rows together (stratified for classification)."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    names, codes = np.unique(groups, return_inverse=True)
    n_groups = len(names)
    if n_groups < 2:
        raise ValueError("the TRAIN rows hold a single group; a grouped split needs two or more")
    k = max(2, min(folds, n_groups))
    if task == "regression":
        # groups in a seeded random order (GroupKFold's own shuffle needs
        # scikit-learn 1.6; the project allows 1.5)
        shuffled = np.random.default_rng(seed).permutation(n_groups)[codes]
        return list(GroupKFold(n_splits=k).split(np.zeros(len(y)), y, shuffled))
    counts = np.bincount(y)
    k = max(2, min(k, int(counts[counts > 0].min())))
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(cv.split(np.zeros(len(y)), y, groups))


def _held_out(
    task: str,
    y: np.ndarray,
    seed: int,
    order: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``y`` to fit on and to stop boosting on: the newest rows
    (``order``), whole groups (``groups``), else stratified when it can be."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    if order is not None:
        ranked = np.argsort(order, kind="stable")
        cut = max(1, int(round(len(y) * (1 - EARLY_STOPPING_SHARE))))
        return np.sort(ranked[:cut]), np.sort(ranked[cut:])
    if groups is not None and len(np.unique(groups)) >= 2:
        cv = GroupShuffleSplit(n_splits=1, test_size=EARLY_STOPPING_SHARE, random_state=seed)
        fit_at, stop_at = next(cv.split(np.zeros(len(y)), y, groups))
        return np.sort(fit_at), np.sort(stop_at)
    index = np.arange(len(y))
    stratify = None
    if task != "regression":
        counts = np.bincount(y)
        if counts[counts > 0].min() >= 2:
            stratify = y
    fit, stop = train_test_split(
        index, test_size=EARLY_STOPPING_SHARE, random_state=seed, stratify=stratify
    )
    return np.sort(fit), np.sort(stop)


def output_of(task: str, estimator: Any, X: Any, n_classes: int) -> np.ndarray:
    """The task's output (as ``TrainedModel.output``): the positive class's
    probability, every project class's probability, or the value."""
    if task == "regression":
        return np.asarray(estimator.predict(X), dtype=np.float64)
    proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    full = np.zeros((len(X), n_classes))
    full[:, np.asarray(estimator.classes_, dtype=np.int64)] = proba
    return full[:, 1] if task == "binary" else full


def _fit(
    candidate: Candidate,
    task: str,
    X: np.ndarray,
    y: np.ndarray,
    seed: int,
    order: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> tuple[Any, int | None]:
    """Fit one candidate for a fold (with its ``cv_params``); boosted trees stop
    early on held-out rows. Returns the estimator and, for boosted trees, the
    best round count."""
    est = candidate.make()
    if candidate.cv_params:
        est.set_params(**candidate.cv_params)
    if not candidate.early_stopping:
        return est.fit(X, y), None
    import lightgbm as lgb

    fit, stop = _held_out(task, y, seed, order, groups)
    est.fit(
        X[fit],
        y[fit],
        eval_X=(X[stop],),
        eval_y=(y[stop],),
        callbacks=[
            lgb.early_stopping(
                PATIENCE,
                first_metric_only=True,
                verbose=False,
                min_delta=MIN_GAIN * _baseline_loss(task, y[fit], y[stop]) / np.sqrt(len(stop)),
            )
        ],
    )
    return est, int(est.best_iteration_ or est.n_estimators)


def _side_by_side(candidate: Candidate, n_rows: int) -> bool:
    """Whether a candidate's folds fit two at a time: boosted trees on a small
    table (one LightGBM thread each; see ``threads``) with a second core.
    LightGBM boosts with the GIL released, so two folds fit at once; each
    fold's fit is the same as alone (``deterministic``), and results are read
    in the folds' order. Measured on 2 cores, it saves 0.5 s of selection on
    the Titanic example, 1.1 s on wine and 0.3 s on diabetes, with the same
    scores. Not for forests: their per-tree Python holds the GIL (measured:
    slower side by side)."""
    from minimlops.process import cores

    return candidate.early_stopping and threads(n_rows) == 1 and cores() > 1


def _out_of_bag(
    candidate: Candidate, task: str, X: np.ndarray, y: np.ndarray, n_classes: int, seed: int
) -> np.ndarray | None:
    """A random forest's out-of-bag outputs: every row predicted by the trees
    whose bootstrap did not draw it (about a third of them), from one fit
    with the trees cross-validation would use (and ``seed`` for its
    bootstraps), in place of a fit per fold.

    Like out-of-fold outputs they come from trees that never saw the row, so
    they are scored and ensembled the same way (Breiman, "Random Forests",
    2001, section 3.1). Only for folds at random: with time or groups, a
    bootstrap mixes rows the folds keep apart. None when a row has no such
    tree (too few trees for the rows), and the folds are used instead.

    Measured on 2 cores, selection as a whole (with ``_side_by_side``): the
    Titanic example 1.9 s instead of 5.5 s (three repeated 5-fold
    cross-validations, three out-of-bag fits), 14,000 rows of 161 features
    9.6 s instead of 14.5 s (3 folds); the same model chosen on every data set
    of ``minimlops bench --quality``, with the forests' figures moved by about
    as much as one draw of folds from the next.
    """
    import warnings

    est = candidate.make()
    est.set_params(**candidate.cv_params, oob_score=True, random_state=seed)
    with warnings.catch_warnings():  # a row no tree left out: answered below
        warnings.filterwarnings("ignore", message="Some inputs do not have OOB scores")
        est.fit(X, y)
    drawn = np.zeros(len(y), dtype=np.int64)
    for rows in est.estimators_samples_:  # each tree's bootstrap (rows drawn)
        drawn[np.unique(rows)] += 1
    if (drawn == len(est.estimators_)).any():
        return None
    if task == "regression":
        return np.asarray(est.oob_prediction_, dtype=np.float64).reshape(len(y))
    proba = np.asarray(est.oob_decision_function_, dtype=np.float64)
    full = np.zeros((len(y), n_classes))
    full[:, np.asarray(est.classes_, dtype=np.int64)] = proba
    return full[:, 1] if task == "binary" else full


def _baseline_loss(task: str, y_fit: np.ndarray, y_stop: np.ndarray) -> float:
    """The early-stopping metric (LightGBM's default for the task: log loss,
    or l2) of a model that knows nothing: the fit rows' class shares, or mean."""
    if task == "regression":
        return float(np.mean((y_stop - np.mean(y_fit)) ** 2))
    share = np.bincount(y_fit, minlength=int(max(y_fit.max(), y_stop.max())) + 1) / len(y_fit)
    return float(-np.mean(np.log(np.clip(share[y_stop], 1e-15, 1.0))))


def imbalance(task: str, y: np.ndarray, threshold: float) -> dict[str, Any]:
    """Whether the minority class is rare enough to try class weights."""
    if task == "regression" or len(y) == 0:
        return {}
    counts = np.bincount(y)
    present = counts[counts > 0]
    share = float(present.min() / len(y))
    return {
        "minority_share": round(share, 4),
        "threshold": threshold,
        "weighted": share < threshold,
    }


def select(
    X: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    n_classes: int,
    metric: str,
    direction: str,
    folds: int,
    seed: int,
    budget_s: float | None,
    imbalance_threshold: float,
    progress: Progress | None = None,
    ensembles: bool = True,
    order: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    threshold: float = 0.5,
    linear_ignores: tuple[int, ...] = (),
) -> Selection:
    """Cross-validate every candidate on (a sample of) the rows; choose the best
    on ``metric``. A candidate is started only while less than
    ``SELECTION_SHARE`` of ``budget_s`` is spent, and not when the time its
    family's last one took, times its ``cost``, would overrun the budget; the
    first always runs.

    With a rare minority class (share under ``imbalance_threshold``), the
    linear and first boosted candidates are also tried with balanced class
    weights, and the primary metric decides between weighted and not.

    ``budget_s`` None: every candidate that fits in ``BUDGET_MAX_S``; the
    version records the budget, where it came from and what it skipped.

    ``order`` (a number per row that sorts it in time) makes the folds
    expanding windows in time, ``groups`` (a label per row) grouped folds:
    what the project's split does to TRAIN, VALIDATION and TEST, cross-
    validation does inside TRAIN.

    With ``ensembles``, a weighted ensemble of the scored candidates is tried
    too (``_ensemble``), and served when its cross-fitted figure is better.
    """
    from minimlops.ml.metrics import metrics

    started = time.monotonic()
    pick = _sample(len(y), seed)
    Xs, ys = X[pick], y[pick]
    os_ = None if order is None else order[pick]
    gs = None if groups is None else groups[pick]
    if os_ is not None and len(np.unique(os_)) < 2:
        # every TRAIN row at one time (monthly snapshots whose oldest month is
        # most rows): no window can be older than another; shuffled folds
        logger.warning(
            "train_model: every TRAIN row has the same time; cross-validating on "
            "shuffled folds, not in time order"
        )
        os_ = order = None
    k_folds = folds if len(ys) < FEW_FOLDS_FROM else min(folds, 3)
    splits = draw_folds(task, ys, k_folds, seed, os_, gs)
    # expanding windows never score the oldest block: metrics are on the rows scored
    scored = np.unique(np.concatenate([t for _, t in splits]))
    # repeated on small tables (not in time: its windows are the only ones there are)
    # and not when every group already sits in a fold of its own (no new draw)
    few_groups = gs is not None and len(np.unique(gs)) <= k_folds
    repeats = REPEATS if os_ is None and not few_groups and len(ys) < REPEAT_BELOW else 1
    rounds_of_folds = [splits] + [
        draw_folds(task, ys, k_folds, seed + 1000 * r, os_, gs) for r in range(1, repeats)
    ]
    budget_from = UNSET if budget_s is None else "set"
    budget_s = BUDGET_MAX_S if budget_s is None else budget_s
    weights = imbalance(task, y, imbalance_threshold)
    pool = candidates(task, seed, len(y), linear_ignores=linear_ignores)
    if weights.get("weighted"):
        balanced = {
            c.name: c
            for c in candidates(
                task, seed, len(y), class_weight="balanced", linear_ignores=linear_ignores
            )
        }
        pool[1:1] = [
            _renamed(balanced[c.name], c.name + "_balanced")
            for c in pool
            if c.family == "linear" or c.name == "lightgbm"
        ]
    board: list[dict[str, Any]] = []
    sign = 1.0 if direction == "min" else -1.0
    best: tuple[float, int] | None = None
    rounds_of: dict[str, int] = {}
    took: dict[str, float] = {}  # seconds the last scored candidate of each family took
    outputs: dict[str, np.ndarray] = {}
    for i, cand in enumerate(pool):
        entry: dict[str, Any] = {
            "name": cand.name,
            "family": cand.family,
            "settings": cand.describe(),
        }
        board.append(entry)
        spent = time.monotonic() - started
        if i > 0 and spent > SELECTION_SHARE * budget_s:
            entry["status"] = (
                f"skipped: {spent:.0f} s of the {budget_s:.0f} s training budget spent"
            )
            continue
        expected = cand.cost * took.get(cand.family, 0.0)
        if i > 0 and spent + expected > budget_s:
            entry["status"] = (
                f"skipped: would take ~{expected:.0f} s more, past the "
                f"{budget_s:.0f} s training budget"
            )
            continue
        if progress:
            progress(f"cross-validating {cand.name}", i, len(pool) + 1)
        t0 = time.monotonic()
        counts = []
        repeated = []  # each repetition's out-of-fold outputs on the rows scored
        try:
            bagged = (
                [
                    _out_of_bag(cand, task, Xs, ys, n_classes, seed + 1000 * r)
                    for r in range(repeats)
                ]
                if cand.family == "random_forest" and os_ is None and gs is None
                else None
            )
            if bagged is not None and all(b is not None for b in bagged):
                # a fit for each repetition, each with its own bootstraps, in
                # place of that repetition's folds
                entry["estimate"] = "out-of-bag"
                repeated = [b[scored] for b in bagged if b is not None]
            else:
                bagged = None
            jobs = [
                (r, k, train_at, test_at)
                for r, these in enumerate([] if bagged is not None else rounds_of_folds)
                for k, (train_at, test_at) in enumerate(these)
            ]

            def fold(
                job: tuple[int, int, np.ndarray, np.ndarray], cand: Candidate = cand
            ) -> tuple[np.ndarray, int | None]:
                """One fold's outputs on the rows it did not see (the fit is
                dropped here: no more than one fold's model per thread at a time)."""
                r, k, train_at, test_at = job
                est, rounds = _fit(
                    cand,
                    task,
                    Xs[train_at],
                    ys[train_at],
                    seed + k + 1000 * r,
                    None if os_ is None else os_[train_at],
                    None if gs is None else gs[train_at],
                )
                return output_of(task, est, Xs[test_at], n_classes), rounds

            if _side_by_side(cand, len(ys)):
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(2, thread_name_prefix="minimlops-fold") as both:
                    fitted = list(both.map(fold, jobs))
            else:
                fitted = [fold(j) for j in jobs]
            oofs: dict[int, np.ndarray] = {}
            for (r, _, _, test_at), (out, rounds) in zip(jobs, fitted, strict=True):
                if r not in oofs:
                    oofs[r] = np.zeros((len(ys), n_classes) if task == "multiclass" else len(ys))
                oofs[r][test_at] = out
                if rounds is not None:
                    counts.append(rounds)
            repeated += [oofs[r][scored] for r in sorted(oofs)]
        except Exception as exc:  # a candidate that cannot fit these rows is reported, not fatal
            logger.warning("train_model: %s failed in cross-validation: %s", cand.name, exc)
            entry["status"] = f"failed: {type(exc).__name__}: {exc}"[:300]
            continue
        # repetitions one after the other: each row once per repetition, each
        # output a single fit's (never an average of fits, which would flatter)
        oof = np.concatenate(repeated)
        outputs[cand.name] = oof
        scores = metrics(task, np.tile(ys[scored], repeats), oof, n_classes, threshold)
        scores.pop("rows", None)
        took[cand.family] = time.monotonic() - t0
        entry.update(status="scored", cv=scores, seconds=round(took[cand.family], 2))
        if counts:
            rounds_of[cand.name] = max(1, int(round(float(np.mean(counts)) * ROUNDS_SCALE)))
            entry["rounds"] = rounds_of[cand.name]
        value = scores.get(metric)
        if value is None or not np.isfinite(value):
            continue
        if best is None or sign * value < best[0]:  # ties: the earlier (simpler) one
            best = (sign * value, i)
    simpler: dict[str, Any] = {}
    top = best[1] if best is not None else None
    if best is not None:
        best, simpler = _simplest_within_one_se(
            best, pool, outputs, task, metric, ys[scored], repeats, threshold, sign
        )
    if best is None:
        raise ValueError(
            "no candidate could be fitted on the TRAIN rows: "
            + "; ".join(f"{e['name']}: {e.get('status')}" for e in board)
        )
    chosen = pool[best[1]]
    if weights:
        weights["chosen_weighted"] = chosen.name.endswith("_balanced")
    result = Selection(
        chosen,
        rounds_of.get(chosen.name),
        metric,
        direction,
        board,
        weights,
        folds=len(splits),
        repeats=repeats,
        rows=len(ys),
        oof=outputs[chosen.name],
        oof_y=np.tile(ys[scored], repeats),
        folds_by="time" if order is not None else "group" if groups is not None else "random",
        budget_s=budget_s,
        budget_from=budget_from,
        steps=len(pool) + 1,
        simpler_than=simpler,
    )
    if ensembles:
        # the ensemble's cross-fit keeps groups whole and time in blocks, as the folds do
        cross: np.ndarray | None = None
        if gs is not None:
            names, codes = np.unique(gs[scored], return_inverse=True)
            cross = np.random.default_rng(seed).permutation(len(names))[codes] % ensemble.CROSS_FIT
        elif os_ is not None:
            rank = np.argsort(np.argsort(os_[scored], kind="stable"), kind="stable")
            cross = rank * ensemble.CROSS_FIT // len(rank)
        _ensemble(result, pool, outputs, rounds_of, task, n_classes, seed, cross, threshold)
    if not result.ensemble:
        board[best[1]]["chosen"] = True
        if simpler and top is not None:  # said of what is served (an ensemble: not the rule's)
            board[top]["note"] = (
                f"best by cross-validation; {chosen.name} is within one standard "
                f"error of it (a row's loss {simpler['gap']:+.3g} ± {simpler['se']:.2g}), "
                "and simpler: chosen"
            )
    else:
        result.simpler_than = {}
    result.seconds = round(time.monotonic() - started, 2)
    return result


# The primary metrics the rule applies to: measured on log loss and RMSE (r2
# ranks as RMSE). Not accuracy: a row's 0 or 1 is so coarse that one standard
# error spans real differences (the exercise's Titanic: the logistic
# regression taken over a forest, TEST accuracy 0.835 -> 0.805).
ONE_SE_METRICS = ("log_loss", "rmse", "r2")


def _row_losses(
    task: str, metric: str, y: np.ndarray, oof: np.ndarray, repeats: int, threshold: float
) -> np.ndarray | None:
    """Each scored row's loss on a metric that is a mean over rows (log
    loss, squared error for RMSE and r2, absolute error, accuracy's errors,
    Brier), averaged over the repetitions; None for one that is not (ROC AUC,
    F1)."""
    n = len(y)
    out = oof.reshape(repeats, n, -1) if task == "multiclass" else oof.reshape(repeats, n)
    yy = y.astype(np.int64) if task != "regression" else y.astype(np.float64)
    if metric == "log_loss":
        p = out[:, np.arange(n), yy] if task == "multiclass" else np.where(yy == 1, out, 1 - out)
        loss = -np.log(np.clip(p, 1e-15, 1.0))
    elif metric in ("rmse", "r2"):
        loss = (out - yy) ** 2
    elif metric == "mae":
        loss = np.abs(out - yy)
    elif metric == "brier":
        loss = (out - yy) ** 2
    elif metric == "accuracy":
        guess = out.argmax(axis=2) if task == "multiclass" else (out >= threshold)
        loss = (guess != yy).astype(np.float64)
    else:
        return None
    return np.asarray(loss.mean(axis=0), dtype=np.float64)


def _simplest_within_one_se(
    best: tuple[float, int],
    pool: list[Candidate],
    outputs: dict[str, np.ndarray],
    task: str,
    metric: str,
    y: np.ndarray,
    repeats: int,
    threshold: float,
    sign: float,
) -> tuple[tuple[float, int], dict[str, Any]]:
    """The one-standard-error rule (Breiman et al., 1984), for the simplest
    family: a linear model when its out-of-fold loss a row is within one
    paired standard error of the best candidate's (of several, with and
    without class weights, the one of lowest loss). On a small table the
    best by cross-validation can win by chance (wine's 124 TRAIN rows:
    boosted trees ahead of the logistic regression by less than their noise,
    then a confident mistake on TEST); on a large one the standard error is
    small and the best stays. Among the trees' settings there is no simpler
    one to prefer (measured: preferring the pool's earlier ones cost the
    penguins 0.016 log loss). Only on ``ONE_SE_METRICS``."""
    from minimlops.ml.metrics import metrics

    if pool[best[1]].family == "linear" or metric not in ONE_SE_METRICS:
        return best, {}
    top = _row_losses(task, metric, y, outputs[pool[best[1]].name], repeats, threshold)
    if top is None or len(top) < 3:
        return best, {}
    within = []  # (mean gap, its standard error, index) of each linear model within
    for i, cand in enumerate(pool):
        if cand.family != "linear" or cand.name not in outputs:
            continue
        mine = _row_losses(task, metric, y, outputs[cand.name], repeats, threshold)
        assert mine is not None
        gap = mine - top
        se = float(gap.std(ddof=1) / np.sqrt(len(gap)))
        if float(gap.mean()) <= se:
            within.append((float(gap.mean()), se, i))
    if not within:
        return best, {}
    gap, se, i = min(within)
    n_classes = outputs[pool[i].name].shape[1] if task == "multiclass" else 2
    value = metrics(task, np.tile(y, repeats), outputs[pool[i].name], n_classes, threshold)[metric]
    return (sign * float(value), i), {
        "name": pool[best[1]].name,
        "gap": round(gap, 6),
        "se": round(se, 6),
    }


def _ensemble(
    result: Selection,
    pool: list[Candidate],
    outputs: dict[str, np.ndarray],
    rounds_of: dict[str, int],
    task: str,
    n_classes: int,
    seed: int,
    cross: np.ndarray | None = None,
    threshold: float = 0.5,
) -> None:
    """Try a weighted ensemble of the scored candidates (``ml.ensemble``):
    listed on the leaderboard with its cross-fitted figures, and served
    (``result.ensemble``) when they beat the best single candidate's."""
    from minimlops.ml.metrics import metrics

    scored = [c for c in pool if c.name in outputs]
    y = result.oof_y
    assert y is not None
    choice = ensemble.choose(
        task,
        result.metric,
        result.direction,
        y,
        [outputs[c.name] for c in scored],
        n_classes,
        seed,
        repeats=result.repeats,
        folds=cross,
        threshold=threshold,
    )
    if choice is None:
        return
    if len(choice.members) < 2:  # tried: the leaderboard says what came of it
        only = scored[choice.members[0]].name
        result.leaderboard.append(
            {
                "name": "ensemble",
                "family": "ensemble",
                "settings": f"1.00 {only}",
                "status": (
                    f"not formed: greedy ensemble selection kept {only} alone (no other "
                    f"candidate moved the blend by more than {ensemble.MEMBER_MARGIN:.1%})"
                ),
            }
        )
        return
    sign = 1.0 if result.direction == "min" else -1.0
    members = [
        (scored[i], rounds_of.get(scored[i].name), w)
        for i, w in zip(choice.members, choice.weights, strict=True)
    ]
    # better by more than MARGIN of the best single figure: an ensemble costs
    # its members' sum to serve, fit and refit
    better = sign * choice.cross_fitted < sign * choice.best_single - ensemble.MARGIN * abs(
        choice.best_single
    )
    cv = metrics(task, y, choice.outputs, n_classes, threshold)
    cv.pop("rows", None)
    entry: dict[str, Any] = {
        "name": "ensemble",
        "family": "ensemble",
        "settings": " + ".join(f"{w:.2f} {c.name}" for c, _, w in members),
        "status": "scored",
        "cv": cv,
        "members": [{"name": c.name, "weight": round(w, 4)} for c, _, w in members],
        "cross_fitted": True,
    }
    if not better:
        entry["note"] = (
            f"not served: its cross-fitted {result.metric} {choice.cross_fitted:.4f} "
            f"does not beat {scored[choice.best_index].name}'s {choice.best_single:.4f} "
            f"by more than {ensemble.MARGIN:.1%}"
        )
    result.leaderboard.append(entry)
    if better:
        entry["chosen"] = True
        result.ensemble = members
        result.oof = choice.outputs
        if result.class_weight:
            result.class_weight["chosen_weighted"] = any(
                c.name.endswith("_balanced") for c, _, _ in members
            )


def fit_chosen(
    selection: Selection,
    task: str,
    X: np.ndarray,
    y: np.ndarray,
    seed: int,
    linear_ignores: tuple[int, ...] = (),
) -> Any:
    """The chosen candidate (or the ensemble's members) fitted on all the
    rows (boosted trees: for the selected round count, without holding rows out).
    ``linear_ignores``: the calendar columns of ``X`` (a refit's features may
    have more one-hot slots before them than selection's had)."""
    if selection.ensemble:
        from minimlops.ml.ensemble import Ensemble

        return Ensemble(
            [_fit_one(c, r, task, X, y, seed, linear_ignores) for c, r, _ in selection.ensemble],
            [w for _, _, w in selection.ensemble],
            [c.name for c, _, _ in selection.ensemble],
            task,
        )
    return _fit_one(selection.chosen, selection.rounds, task, X, y, seed, linear_ignores)


def _fit_one(
    cand: Candidate,
    rounds: int | None,
    task: str,
    X: np.ndarray,
    y: np.ndarray,
    seed: int,
    linear_ignores: tuple[int, ...] = (),
) -> Any:
    if cand.early_stopping and rounds is not None:
        params = {k: v for k, v in cand.params.items() if k != "class_weight"}
        est = lightgbm(
            task,
            params,
            seed=seed,
            n_rows=len(y),
            n_estimators=rounds,
            class_weight=cand.params.get("class_weight"),
        )
    else:
        est = cand.make()
    if isinstance(est, Ignoring):  # by this matrix's columns, not selection's
        est.columns = list(linear_ignores)
    return est.fit(X, y)


def _renamed(c: Candidate, name: str) -> Candidate:
    return Candidate(
        name,
        c.family,
        {**c.params, "class_weight": "balanced"},
        c.make,
        c.early_stopping,
        cost=c.cost,
        cv_params=dict(c.cv_params),
    )


def _sample(n: int, seed: int) -> np.ndarray:
    if n <= SELECTION_SAMPLE:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, SELECTION_SAMPLE, replace=False))
