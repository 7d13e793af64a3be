"""The ``zsad`` command line.

Commands run as plain Python by default: no Prefect API, no ephemeral server to start (seconds,
and a point of failure on a busy machine). ``--prefect`` (or a configured ``PREFECT_API_URL``)
runs the command as its Prefect flow instead, so it shows in the Prefect UI. The demo always
runs through Prefect (in its ephemeral mode) to show the whole stack.

Exit codes: 0 done; 1 done, but some images failed (they are listed); 2 a usage or input
error (nothing was scored); 130 interrupted (finished units are kept).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any

from zsad.sweep import format_axes, parse_axes, with_shots

from .cli_args import _common, _positive_int, _predict_args, _shots_args, _store_args, prefect_arg
from .cli_args import fraction as _fraction
from .commands import add_flow_args, call_flow, flow_kwargs
from .settings import apply_defaults

EXIT_PARTIAL, EXIT_ERROR, EXIT_INTERRUPTED = 1, 2, 130


FLOW_COMMANDS = {  # command -> (module, flow): their options are the flow's parameters (``flows.commands``)
    "precompute": ("flows.precompute", "precompute"),
    "aggregate": ("flows.aggregate", "aggregate"),
    "evaluate": ("flows.evaluate", "evaluate"),
}


def _flow(command: str) -> Any:
    module, name = FLOW_COMMANDS[command]
    return getattr(importlib.import_module(module), name)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``zsad`` parser. A flow command's options are generated from its flow, whose module
    (Prefect, Dask) is imported only when ``argv`` names that command (``zsad --help`` and the
    other commands start without it); ``argv`` None builds every command."""
    named = next((a for a in (argv or []) if not a.startswith("-")), None)
    full = argv is None
    ap = argparse.ArgumentParser(prog="zsad", description="Zero-shot industrial anomaly detection (cached DAG).")
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="synthetic data + tiny models: the whole pipeline, a table, heatmaps, a report")
    d.add_argument("--out", default="zsad-demo")
    d.add_argument("--image-size", type=_positive_int, default=192)
    p = sub.add_parser("precompute", help="compute and cache every expensive stage of a data set")
    if full or named == "precompute":
        add_flow_args(p, _flow("precompute"), {"dataset": {"choices": ["visa", "mvtec", "folder", "synthetic"],
                                                    "help": "the data set's layout (its name in the store: --name)"}})
        prefect_arg(p)
    pr = sub.add_parser("predict", help="score images or folders: scores.csv, a heatmap panel per image")
    pr.add_argument("paths", nargs="+", help="image files and/or folders (searched recursively)")
    _common(pr, dataset=False)
    _predict_args(pr)
    pr.add_argument("--threshold", default="auto",
                    help="auto (stored F1-max, else stored FPR), f1, fpr, none, or a number")
    pr.add_argument("--pixel-threshold", default=None, help="auto (stored), none, or a number (mask outline)")
    pr.add_argument("--out", default="zsad-predict", help="folder for scores.csv and heatmaps/")
    cb = sub.add_parser("calibrate", help="store thresholds at a false-alarm rate from known-good images")
    cb.add_argument("--good", nargs="+", required=True, help="known-good image files and/or folders")
    _common(cb, dataset=False)
    _predict_args(cb)
    cb.add_argument("--fpr", type=_fraction, default=0.01, help="target false-alarm rate on good images")
    a = sub.add_parser("aggregate", help="scores and maps of variants, from the store only (Dask)")
    if full or named == "aggregate":
        add_flow_args(a, _flow("aggregate"))
        prefect_arg(a)
        _shots_args(a)
    e = sub.add_parser("evaluate", help="metrics per class and mean; stores F1-max and FPR thresholds")
    if full or named == "evaluate":
        add_flow_args(e, _flow("evaluate"), {"device": {"default": None}})  # None: --root precomputes on the config's
        prefect_arg(e)
        _shots_args(e)
        e.add_argument("--root", default=None, help="with --dataset visa|mvtec: precompute this data set first")
    r = sub.add_parser("report", help="a self-contained HTML report of a run")
    _common(r)
    r.add_argument("--out", default="zsad-report")
    r.add_argument("--variants", "--variant", dest="variants", default="seed",
                   help="'seed', 'grid', a sweep 'fusion=harmonic,geometric', label(s) or stored hash(es); "
                        "several give a variants page ranking them")
    r.add_argument("--results", default=None, help="rank the variants of this metrics.json (from `zsad evaluate`) "
                                                    "instead of recomputing their metrics")
    c = sub.add_parser("cache", help="list / size / prune the store")
    c.add_argument("action", choices=["list", "size", "prune"])
    _store_args(c)
    c.add_argument("--keep", nargs="*", default=[], help="prune: configs whose stages are kept")
    c.add_argument("--variants", default=None,
                   help="prune: drop these aggregate variants only (hashes, labels or a sweep like fusion=geometric)")
    c.add_argument("--with-thresholds", action="store_true", help="prune --variants: drop their thresholds too")
    c.add_argument("--dry-run", action="store_true")
    w = sub.add_parser("weights", help="expected weight files, their sha256 and where they are looked for")
    w.add_argument("action", choices=["list", "fetch"])
    w.add_argument("--key", default=None, help="fetch: which file (see `zsad weights list`)")
    w.add_argument("--dest", default=None)
    return ap


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _orchestrated(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "prefect", False) or os.environ.get("PREFECT_API_URL"))


def _report_failures(command: str, out: dict[str, Any]) -> None:
    from tasks.runtime import failure_text
    for f in out.get("failed", []):
        print(f"zsad {command}: error: {failure_text(f)}", file=sys.stderr)
    if out.get("failed"):
        done = len(out["done"]) if "done" in out else out.get("n_images", 0)
        print(f"zsad {command}: {done} images done, "
              f"{len(out['failed'])} failed (listed above)", file=sys.stderr)


def _precompute(args: argparse.Namespace) -> dict[str, Any]:
    """``precompute`` (also ``evaluate --root``): the flow's parameters from the command line."""
    from .precompute import precompute
    out = call_flow(precompute, flow_kwargs(args, precompute), _orchestrated(args))  # evaluate --root: the rest default
    _report_failures("precompute", out)
    if getattr(args, "dask_address", None):
        for worker, w in sorted(out.get("workers", {}).items(), key=lambda kv: str(kv[0])):
            loads = ", ".join(f"{k} {v}" for k, v in sorted(w["models_loaded"].items())) or "none (already loaded)"
            print(f"zsad precompute: worker {worker}: {w['images']} images in {w['shards']} shards; "
                  f"models loaded: {loads}", file=sys.stderr)
    if args.dataset == "folder":
        from zsad.datasets import scan_folder
        skipped = scan_folder(args.root)[1]
        for path, why in skipped:
            print(f"zsad precompute: skipped {path}: {why}", file=sys.stderr)
        out["skipped"] = [{"path": p, "reason": why} for p, why in skipped]
    return out


def _few_shot_spec(args: argparse.Namespace) -> str | None:
    """``--variants`` with ``--shots/--shot-seed/--reference``; a reference folder is cached first."""
    ref = None
    if args.reference:
        if getattr(args, "read_only", False):
            raise ValueError("--reference caches the folder's images into the store; with --read-only cache them "
                             "first (a run without --read-only)")
        from .configs import load_pipeline_config
        from .references import cache_references, reference_classes, reference_name
        cfg = load_pipeline_config(args.config, patches=True)
        ref = reference_name(args.reference, args.dataset)
        failed = cache_references(args.reference, reference_classes(args.reference, args.classes), args.store, cfg,
                                  ref)
        from tasks.runtime import failure_text
        for f in failed:
            print(f"zsad {args.command}: reference left out: {failure_text(f)}", file=sys.stderr)
    if args.shots is None and args.shot_seed is None and ref is None:
        return args.variants
    if args.variants not in (None, "", "seed", "grid") and "=" not in args.variants:
        raise ValueError(f"--shots/--shot-seed extend a sweep such as 'mode=few-shot;fusion=harmonic', "
                         f"not {args.variants!r}; or write shots=K;shot_seed=S into --variants")
    return format_axes(with_shots(parse_axes(args.variants), shots=args.shots, seed=args.shot_seed, reference=ref))


def run(args: argparse.Namespace) -> Any:  # noqa: C901 - a flat dispatch table
    if args.command == "demo":
        from .demo import run_demo
        out = run_demo(args.out, args.image_size)
        print(f"\nzsad demo: {out['precompute']['n_images']} images, {out['heatmaps']} heatmaps in {args.out}/heatmaps,"
              f" metrics in {args.out}/results, report {out['report']}; cached re-run wrote "
              f"{out['cached_rerun']['units_written']} units and loaded {out['cached_rerun']['models_loaded']} models;"
              f" {out['seconds']:.1f} s. (Tiny random-weight models: the numbers show the pipeline runs, not accuracy.)")
        return out
    if args.command == "precompute":
        out = _precompute(args)
        return {k: v for k, v in out.items() if k != "done"} | {"n_done": len(out["done"])}
    if args.command == "predict":
        from .predict import run_predict
        out = run_predict(args.paths, args.class_name, args.store, args.config, args.threshold, args.pixel_threshold,
                          args.out, args.variant, args.name, args.device, reference=args.reference)
        return {"n_scored": out["n_scored"], "n_failed": out["n_failed"], "quiet": True}
    if args.command == "calibrate":
        from .predict import run_calibrate
        out = run_calibrate(args.good, args.class_name, args.store, args.config, args.fpr, args.variant, args.name,
                            args.device, reference=args.reference)
        _report_failures("calibrate", out)
        return out
    if args.command in ("aggregate", "evaluate"):
        flow = _flow(args.command)
        if args.command == "evaluate" and args.root:
            if args.read_only:
                raise ValueError("--root precomputes into the store; with --read-only run it without --root")
            if _precompute(args)["failed"]:
                raise ValueError("some images of the data set could not be computed (listed above); fix or remove "
                                 "them: metrics over part of a data set would not compare with published ones")
        device = {"device": args.device or "cpu"} if args.command == "evaluate" else {}
        out = call_flow(flow, flow_kwargs(args, flow, variants=_few_shot_spec(args), **device), _orchestrated(args))
        return out if args.command == "aggregate" else {"quiet": True}
    if args.command == "report":
        from .report import build_report
        return {"report": str(build_report(args.store, args.dataset, args.config, args.out, args.variants,
                                           args.results))}
    if args.command == "cache":
        from . import cache
        if args.action == "list":
            return cache.list_stages(args.store)
        if args.action == "size":
            return cache.sizes(args.store)
        if args.variants:
            doomed = cache.prune_variants(args.store, args.variants, args.dry_run, args.with_thresholds)
        else:
            doomed = cache.prune(args.store, args.keep, args.dry_run)
        return {"deleted" if not args.dry_run else "would_delete": doomed}
    if args.command == "weights":
        from . import weights_cmd
        if args.action == "list":
            return weights_cmd.list_weights()
        if not args.key:
            raise ValueError("weights fetch needs --key (see `zsad weights list`)")
        return {"fetched": str(weights_cmd.fetch(args.key, args.dest))}
    raise ValueError(f"unknown command {args.command}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    apply_defaults()
    if getattr(args, "storage_options", None):
        from stores.options import STORAGE_OPTIONS_ENV
        if getattr(args, "dask_address", None):  # the workers would open the store without them
            print(f"zsad {args.command}: error: --storage-options reach this process only; with --dask-address set "
                  f"${STORAGE_OPTIONS_ENV} in every worker's environment (and here) instead", file=sys.stderr)
            return EXIT_ERROR
        os.environ[STORAGE_OPTIONS_ENV] = args.storage_options  # tasks and child processes open it alike
    try:
        out = run(args)
    except (ValueError, OSError) as exc:  # bad input; a TypeError is a bug: its traceback is shown
        print(f"zsad {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"zsad {args.command}: interrupted; finished units are kept, the rest is recomputed next time",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    quiet = isinstance(out, dict) and out.pop("quiet", False)  # the command printed its own table
    if not quiet and args.command != "demo":
        _print(out)
    failed = isinstance(out, dict) and (out.get("n_failed") or out.get("failed"))
    return EXIT_PARTIAL if failed else 0


if __name__ == "__main__":
    sys.exit(main())
