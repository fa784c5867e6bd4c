"""Human-readable ``minimlops status``."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def print_status(console: Console, data: dict[str, Any]) -> None:
    """Print tables, champion, last ingestion and training, and queues."""
    tables = Table("table", "rows", title="warehouse")
    for name, count in data["tables"].items():
        tables.add_row(name, f"{count:,}")
    console.print(tables)
    champ = data.get("champion")
    console.print(
        "champion: "
        + (f"version {champ['version']} (promoted: {champ['reason']})" if champ else "none yet")
    )
    if data.get("serving"):
        console.print(f"serving: version {data['serving']}")
    ing = data.get("last_ingestion")
    if ing:
        counted = (  # a rejected file loads nothing: its bad rows, when they were read
            f"{ing['rows_rejected']:,} bad rows, none loaded"
            if ing["status"] == "rejected" and ing.get("rows_rejected")
            else "none loaded"
            if ing["status"] == "rejected"
            else f"{ing['rows_loaded']:,} rows loaded"
        )
        console.print(
            f"last ingestion: {ing['source_uri']} {ing['status']} ({counted}) "
            f"at {ing['ingested_at']}" + (f" — {ing['message']}" if ing.get("message") else "")
        )
    tr = data.get("last_training")
    if tr:
        metric = tr.get("metric") or "accuracy"
        score = tr.get("score") if tr.get("score") is not None else tr.get("accuracy")
        console.print(
            f"last training: version {tr['version']} ({tr['algorithm']}), {metric} "
            f"{_num(score)} on VALIDATION, {'promoted' if tr['decision']['promote'] else 'kept'}: "
            f"{tr['decision']['reason']}"
        )
    queues = Table(
        "subscription",
        "topic",
        "pending",
        "in flight",
        "done",
        "dead-lettered",
        title="message bus",
    )
    for q in data.get("queues", []):
        queues.add_row(
            q["subscription"],
            q["topic"],
            *(
                "—" if q[k] is None else str(q[k])
                for k in ("pending", "leased", "acked", "dead_lettered")
            ),
        )
    console.print(queues)
    if any(q["pending"] is None for q in data.get("queues", [])):
        console.print("message bus: Pub/Sub counts backlogs in Cloud Monitoring only")
    al = data.get("alerts") or {}
    if not al.get("webhooks"):
        console.print("alerts: off (MINIMLOPS_ALERT_WEBHOOKS is unset)")
    else:
        line = (
            f"alerts: to {', '.join(al['webhooks'])} ({'signed' if al.get('signed') else 'Slack'}); "
            + (
                al["uncounted"]
                if al.get("uncounted")
                else f"{al['sent']} sent, {al['waiting']} waiting"
            )
        )
        if al.get("failed"):
            line += f", [red]{al['failed']} undelivered after every retry[/]"
        if al.get("last_error"):
            line += f"; last error: {escape(al['last_error'])}"
        console.print(line)
    for d in data.get("dead_letters", []):
        console.print(
            f"[red]dead letter[/] {d['subscription']} {d['id']} after {d['attempts']} "
            f"attempts: {d['error']}"
        )


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:  # 15,780 and 1,578.3, never 1.578e+04
        return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:,.1f}"
    return f"{value:.{digits}f}"


def _metric_of(v: dict[str, Any]) -> str:
    return (v.get("decision") or {}).get("metric") or "accuracy"


def _baseline(v: dict[str, Any], metric: str) -> Any:
    base = v.get("baseline") or {}
    task = base.get("task") if isinstance(base.get("task"), dict) else {}
    return task.get(metric, base.get("gender_only_accuracy") if metric == "accuracy" else None)


def models_table(data: dict[str, Any]) -> Table:
    """Model versions in a table that fits the terminal (80 columns and up)
    without cutting a word: no vertical rules, the champion's star beside its
    version, the numbers and the algorithm on one line each, and the decision,
    which takes the width left, wrapped onto as many lines as it needs
    (``models show VERSION`` has the rest: metrics, paired test, candidates)."""
    versions = data["versions"]
    metric = _metric_of(versions[-1]) if versions else "metric"
    table = Table(
        title=f"model {data['model']}",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
        expand=False,
        title_justify="left",
        caption=f"{metric}: the TRAIN-only fit on VALIDATION; TEST: the served fit (TRAIN and "
        "VALIDATION) on the version's own held-back rows; ★ champion; in full: "
        "minimlops models show VERSION",
        caption_justify="left",
    )
    table.add_column("ver", no_wrap=True)
    for name in ("fit\nrows", metric, "TEST", "baseline"):  # (two lines: the decision's width)
        table.add_column(name, no_wrap=True, justify="right")
    # whole from 80 columns up (the decision wraps instead); folded (never cut)
    # only on a narrower terminal
    longest = max((len(v["algorithm"]) for v in versions), default=9)
    table.add_column("algorithm", overflow="fold", min_width=min(longest, 24))
    table.add_column("decision", overflow="fold")
    for v in versions:
        d = v.get("decision") or {}
        table.add_row(
            v["version"] + (" ★" if v["champion"] else ""),
            f"{v.get('fit_rows') or v['training_rows']:,}",
            _num(v["metrics"].get(metric)),
            _num((v.get("test") or {}).get(metric)),
            _num(_baseline(v, metric)),
            v["algorithm"],
            ("promoted: " if d.get("promote") else "kept: ") + d.get("reason", ""),
        )
    return table


def _interval(ci: Any) -> str:
    return "—" if not ci else f"{_num(ci[0])}–{_num(ci[1])}"


def print_version(console: Console, v: dict[str, Any]) -> None:
    """One version in full: metrics with intervals, baseline, the champion
    compared, the decision, the candidates and the most important columns."""
    d, p = v.get("decision") or {}, v.get("project") or {}
    report = v.get("report") or {}
    console.print(
        f"version {v['version']}{' (champion)' if v['champion'] else ''}: "
        f"{v['algorithm']}, {p.get('task', 'binary')} {p.get('target', '')}, "
        f"created {v['created_at'][:19]}"
    )
    compared = v.get("champion_compared") or {}
    table = Table(
        "metric",
        "VALIDATION",
        "95% interval",
        "baseline",
        "with labels",  # VALIDATION and labelled predictions: the gate's rows
        f"champion {compared.get('version') or '—'}",
        title="metrics",
    )
    champ, ci = compared.get("evaluation") or {}, report.get("intervals") or {}
    for name, value in v["metrics"].items():
        if name == "rows":
            continue
        table.add_row(
            name,
            _num(value),
            _interval(ci.get(name)),
            _num(_baseline(v, name)),
            _num((v.get("evaluation") or {}).get(name)),
            _num(champ.get(name)),
        )
    console.print(table)
    test = v.get("test") or {}
    if test.get("rows"):  # the model that serves, on rows nothing learned from
        shown = " · ".join(f"{k} {_num(x)}" for k, x in test.items() if k != "rows")
        console.print(
            f"served fit (TRAIN and VALIDATION), on {int(test['rows']):,} of its TEST rows: {shown}"
        )
    live = v.get("live") or {}
    if live.get("labelled"):
        if live.get("live_mae") is not None:
            console.print(
                f"live: MAE {_num(live['live_mae'])} ({_interval(live.get('mae_interval_95'))}), "
                f"RMSE {_num(live.get('live_rmse'))} on {live['labelled']} labelled predictions"
            )
        else:
            console.print(
                f"live: accuracy {_num(live.get('live_accuracy'))} "
                f"({_interval(live.get('interval_95'))}) on {live['labelled']} "
                "labelled predictions"
            )
    if live.get("predicted_after_landing"):
        console.print(f"live: {_left_out(live['predicted_after_landing'], live['labelled'])}")
    paired = d.get("paired")
    if paired:
        console.print(f"paired test ({paired.get('test', 'mcnemar')}): p = {paired['p_value']:.3g}")
    cal = v.get("calibration") or {}
    if cal.get("reason"):
        kept = cal.get("kept") in (True, "True")  # numpy's bool was once written as text
        console.print(f"calibration: {'kept' if kept else 'not kept'} — {cal['reason']}")
    split = (v.get("training") or {}).get("split")
    if split:
        console.print(f"split: {split.get('description', split.get('strategy'))}")
        for name in ("train", "validation", "test"):
            part = split.get(name) or {}
            if "groups" in part:
                console.print(f"  {name.upper()}: {part['groups']:,} groups")
            elif "from" in part:
                console.print(f"  {name.upper()}: {part['from']} to {part['to']}")
    for warning in v.get("warnings") or []:
        console.print(f"[yellow]warning:[/] {warning['message']}")
    console.print(
        f"decision: {'promoted' if d.get('promote') else 'kept the champion'} — "
        f"{d.get('reason', '')}"
    )
    sel = v.get("selection") or {}
    if sel.get("leaderboard"):
        metric = sel.get("metric", "")
        board = Table(
            "candidate",
            f"CV {metric}",
            "rounds",
            "seconds",
            "",
            title=f"selection: {sel.get('folds', '?')}-fold cross-validation"
            + (f", repeated {sel['repeats']} times," if (sel.get("repeats") or 1) > 1 else "")
            + " on "
            f"{sel.get('rows', 0):,} TRAIN rows"
            + (
                f", {sel.get('seconds') or 0:.0f} s of a {sel['budget_s']:g} s budget "
                f"({sel.get('budget_from')})"
                if sel.get("budget_s")
                else ""
            ),
        )
        for e in sel["leaderboard"]:
            members = e.get("members")
            board.add_row(
                "ensemble of " + " + ".join(f"{m['weight']:.2f} × {m['name']}" for m in members)
                if members
                else e["name"] + (" (out-of-bag)" if e.get("estimate") == "out-of-bag" else ""),
                _num((e.get("cv") or {}).get(metric)),
                str(e.get("rounds") or ""),
                _num(e.get("seconds"), 1),
                "chosen"
                if e.get("chosen")
                else (e.get("note", "") if e.get("status") == "scored" else str(e.get("status"))),
            )
        console.print(board)
        weights = sel.get("class_weight") or {}
        if weights.get("weighted"):
            console.print(
                f"class weights tried: minority share {weights['minority_share']:.3f} "
                f"< {weights['threshold']}; chosen "
                f"{'with' if weights.get('chosen_weighted') else 'without'} them"
            )
    importance = (report.get("importance") or {}).get("columns") or []
    if importance:
        top = Table(
            "column",
            "importance",
            "±",
            title=f"permutation importance "
            f"({report['importance']['metric']} worse by, on VALIDATION)",
        )
        for e in importance[:10]:
            top.add_row(e["column"], _num(e["importance"], 4), _num(e["spread"], 4))
        console.print(top)
    serving = v.get("serving") or {}
    if serving:
        console.print(
            f"serving: {serving.get('runtime')}"
            + (
                f" (largest difference {serving['max_abs_diff']:.1e})"
                if serving.get("max_abs_diff") is not None
                else ""
            )
            + ("; one row: its linear weights" if serving.get("linear") else "")
        )


def _span(seconds: float) -> str:
    """A delay as a person reads it: 40 s, 12 min, 3.5 h, 2.1 d."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}".replace(".0 ", " ")
    return f"{seconds:.0f} s"


def _left_out(n: int, counted: int) -> str:
    what = "more labelled predictions" if counted else "labelled predictions, all"
    return f"{n:,} {what} made after their row had landed, left out"


def _labelled(v: dict[str, Any]) -> str:
    """How many labelled predictions count, their share of those served, and
    how many more were left out (made after their row had landed)."""
    cover, n = v.get("label_coverage"), v.get("predicted_after_landing")
    return (
        str(v["labelled"])
        + ("" if cover is None else f" ({cover:.0%})")
        + (f" +{n:,} after landing" if n else "")
    )


def _delay(v: dict[str, Any]) -> str:
    delay = v.get("label_delay_s")
    if not delay or delay["p50"] is None:
        return "—"
    return f"{_span(delay['p50'])} / {_span(delay['p90'])}"


def live_table(versions: list[dict[str, Any]]) -> Table:
    """Live metrics per version from feedback: accuracy, or MAE and RMSE."""
    regression = any(v.get("live_rmse") is not None or "live_mae" in v for v in versions)
    caption = (
        "+N after landing: labelled predictions made after their row had landed "
        "in the training data, left out of the live figures"
        if any(v.get("predicted_after_landing") for v in versions)
        else None
    )
    if regression:
        table = Table(
            "version",
            "served",
            "labelled",
            "label delay p50 / p90",
            "live MAE (95%)",
            "live RMSE",
            title="live error",
            caption=caption,
        )
        for v in versions:
            ci = v.get("mae_interval_95")
            table.add_row(
                v["version"],
                str(v["served"]),
                _labelled(v),
                _delay(v),
                _num(v.get("live_mae")) + ("" if not ci else f" ({_num(ci[0])}–{_num(ci[1])})"),
                _num(v.get("live_rmse")),
            )
        return table
    table = Table(
        "version",
        "served",
        "labelled",
        "label delay p50 / p90",
        "live accuracy (95%)",
        "estimated (95%), no labels needed",
        title="live accuracy",
        caption=caption,
    )
    for v in versions:
        ci, est = v["interval_95"], v.get("estimated")
        table.add_row(
            v["version"],
            str(v["served"]),
            _labelled(v),
            _delay(v),
            "—" if ci is None else f"{v['live_accuracy']:.3f} ({ci[0]:.3f}–{ci[1]:.3f})",
            "—"
            if not est
            else f"{est['accuracy']:.3f} ({est['interval_95'][0]:.3f}–{est['interval_95'][1]:.3f}) "
            f"on {est['rows']}",
        )
    return table
