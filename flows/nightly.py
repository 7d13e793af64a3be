"""Flow ``nightly``: score the new images of an inspection folder against the stored threshold.

Scheduled by ``prefect.yaml``. Images already scored (same path, size and mtime) are skipped, so
a run costs only the day's new images. Each run writes ``{out_dir}/{name}/{run}/scores.csv``
and a panel PNG per image, publishes a table and a markdown summary as Prefect artifacts (the
UI's Artifacts tab), and returns a small JSON-able summary. A bad file is a row with its error;
the others are scored.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact


from .predict import run_predict
from .score_files import new_files
from .command_requests import NightlyRequest, PredictRequest


def summary_markdown(summary: dict[str, Any], root: str, out: Path) -> str:
    top = sorted((r for r in summary["rows"] if r["status"] == "scored"), key=lambda r: -r["sample_score"])[:5]
    lines = [f"# zsad nightly: {root}", "",
             f"* new images: **{summary['n_new']}** of {summary['n_total']} in the folder",
             f"* scored: **{summary['n_scored']}**, flagged anomalous: **{summary['n_anomalous']}**, "
             f"failed: **{summary['n_failed']}**",
             f"* threshold: {summary['threshold_source']}", f"* results: `{out}`", ""]
    if top:
        lines += ["## Highest scores", "", "| file | score | decision | heatmap |", "|---|---:|---|---|"]
        lines += [f"| {Path(r['path']).name} | {r['sample_score']:.4f} | {r['decision']} | `{r['heatmap']}` |"
                  for r in top]
    failed = [r for r in summary["rows"] if r["status"] == "error"]
    if failed:
        lines += ["", "## Failed files", ""] + [f"* `{r['path']}`: {r['error']}" for r in failed]
    return "\n".join(lines)


@flow(name="zsad-nightly", persist_result=True)
def nightly(request: NightlyRequest) -> dict[str, Any]:
    """Score the new images under ``root`` (of ``class_name``) and publish the results; few-shot
    against the normal images of folder ``reference`` when given."""
    logger, r = get_run_logger(), request
    root, name = r.root, r.name
    fresh, total = new_files(root, r.class_name, r.store, r.config, name)
    run_dir = Path(r.out_dir) / name / dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    summary = run_predict(PredictRequest(paths=tuple(str(f) for f in fresh), class_name=r.class_name, store=r.store,
                                         config=r.config, threshold=r.threshold, out=str(run_dir), variant=r.variant,
                                         name=name, device=r.device, progress=False, echo=False,
                                         reference=r.reference or None, against=r.against or None)) if fresh else \
        {"n_scored": 0, "n_failed": 0, "n_anomalous": 0, "rows": [], "scores_csv": None,
         "threshold_source": "(nothing to score)", "threshold": None}
    summary.update(n_new=len(fresh), n_total=total)
    keep = ("path", "sample_score", "decision", "threshold", "heatmap", "status", "error")
    create_table_artifact(key=f"zsad-nightly-{_slug(name)}", description=f"Scores of the new images under {root}",
                          table=[{k: r.get(k, "") for k in keep} for r in summary["rows"]] or [{"path": "(none)"}])
    create_markdown_artifact(key=f"zsad-nightly-{_slug(name)}-summary", markdown=summary_markdown(summary, root,
                                                                                                  run_dir))
    logger.info("%d new images: %d scored, %d anomalous, %d failed; %s", len(fresh), summary["n_scored"],
                summary["n_anomalous"], summary["n_failed"], summary["scores_csv"])
    for r in summary["rows"]:
        if r["status"] == "error":
            logger.warning("failed: %s: %s", r["path"], r["error"])
    return {k: v for k, v in summary.items() if k != "rows"}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "line"
