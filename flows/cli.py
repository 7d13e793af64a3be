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
import json
import os
import sys
from typing import Any

from zsad.sweep import format_axes, parse_axes, with_shots

from .cli_args import _common, _positive_int, _predict_args, _shots_args, _store_args, cluster_args
from .cli_args import fraction as _fraction
from .settings import apply_defaults

EXIT_PARTIAL, EXIT_ERROR, EXIT_INTERRUPTED = 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="zsad", description="Zero-shot industrial anomaly detection (cached DAG).")
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="synthetic data + tiny models: the whole pipeline, a table, heatmaps, a report")
    d.add_argument("--out", default="zsad-demo")
    d.add_argument("--image-size", type=_positive_int, default=192)
    p = sub.add_parser("precompute", help="compute and cache every expensive stage of a data set")
    _common(p, dataset=False)
    p.add_argument("--dataset", default="synthetic", choices=["visa", "mvtec", "folder", "synthetic"])
    p.add_argument("--root", required=True, help="data set folder")
    p.add_argument("--name", default=None, help="name of the data set in the store (default: its kind)")
    p.add_argument("--classes", nargs="*", default=None)
    p.add_argument("--shard-size", type=_positive_int, default=32)
    p.add_argument("--images-per-batch", type=_positive_int, default=None,
                   help="GPU: tiles of N images per CLIP/CLIPSeg batch (default 1: exact; >1 gets its own cache)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=None,
                   help="CLIP/CLIPSeg under autocast (default fp32; others get their own cache)")
    p.add_argument("--verify", action="store_true", help="read every unit's completeness marker instead of "
                                                         "trusting the unit index (object storage)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: the config's)")
    p.add_argument("--patches", action="store_true", help="also cache CLIP patch tokens (few-shot and mutual modes; "
                                                          "~1.6 MB per tile with the paper's CLIP)")
    p.add_argument("--split", choices=["test", "train"], default="test",
                   help="train: cache the normal training images (references of the few-shot mode)")
    p.add_argument("--fusions", type=_fusions, default=(), help="also build the fused maps of these fusion methods "
                   "(e.g. harmonic,geometric; aggregation otherwise builds them on first need)")
    cluster_args(p, "the shards (each worker loads the models once)")
    pr = sub.add_parser("predict", help="score images or folders: scores.csv, a heatmap panel per image")
    pr.add_argument("paths", nargs="+", help="image files and/or folders (searched recursively)")
    _common(pr, dataset=False, prefect=False)
    _predict_args(pr)
    pr.add_argument("--threshold", default="auto",
                    help="auto (stored F1-max, else stored FPR), f1, fpr, none, or a number")
    pr.add_argument("--pixel-threshold", default=None, help="auto (stored), none, or a number (mask outline)")
    pr.add_argument("--out", default="zsad-predict", help="folder for scores.csv and heatmaps/")
    cb = sub.add_parser("calibrate", help="store thresholds at a false-alarm rate from known-good images")
    cb.add_argument("--good", nargs="+", required=True, help="known-good image files and/or folders")
    _common(cb, dataset=False, prefect=False)
    _predict_args(cb)
    cb.add_argument("--fpr", type=_fraction, default=0.01, help="target false-alarm rate on good images")
    a = sub.add_parser("aggregate", help="scores and maps of variants, from the store only (Dask)")
    _common(a)
    a.add_argument("--variants", default="seed", help="'seed', 'grid' or 'fusion=harmonic,geometric;top_fraction=.25,.5'")
    a.add_argument("--scheduler", default="auto", choices=["auto", "threads", "processes", "synchronous"],
                   help="auto = threads (the hot loops release the GIL; processes measured slower)")
    cluster_args(a, "the mutual pass and the aggregation chunks")
    a.add_argument("--save-maps", action="store_true", help="also store each image's full-size map (float16)")
    _shots_args(a)
    e = sub.add_parser("evaluate", help="metrics per class and mean; stores F1-max and FPR thresholds")
    _common(e)
    e.add_argument("--device", default=None, help="cuda: paste and count the maps on the GPU (and precompute there "
                                                  "with --root); default cpu")
    e.add_argument("--variants", default="seed")
    e.add_argument("--out", default="zsad-results")
    e.add_argument("--pixel-size", type=_positive_int, default=None,
                   help="evaluate pixels at this square size (default: full)")
    e.add_argument("--fpr", type=_fraction, default=0.01, help="also store thresholds at this FPR on normal images")
    cluster_args(e, "the precompute (with --root), the mutual pass and the aggregation")
    e.add_argument("--save-maps", action="store_true", help="also store each image's full-size map (float16)")
    _shots_args(e)
    e.add_argument("--root", default=None, help="with --dataset visa|mvtec: precompute this data set first")
    e.add_argument("--read-only", action="store_true",
                   help="write nothing to the store (read-only access to a shared cache): metrics and thresholds "
                        "only in --out")
    r = sub.add_parser("report", help="a self-contained HTML report of a run")
    _common(r, prefect=False)
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


def _fusions(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    from zsad.config import FUSIONS
    bad = [n for n in names if n not in FUSIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"fusions are harmonic, arithmetic or geometric (comma-separated), got {text!r}")
    return names


def _precompute(args: argparse.Namespace) -> dict[str, Any]:
    from .configs import load_pipeline_config
    from .precompute import dataset_name, precompute, run_precompute
    from zsad.datasets import read_dataset
    name, shard = getattr(args, "name", None), getattr(args, "shard_size", 32)
    device, verify = getattr(args, "device", None), getattr(args, "verify", False)
    patches, split = getattr(args, "patches", None) or None, getattr(args, "split", "test")
    speed = {"images_per_batch": getattr(args, "images_per_batch", None), "precision": getattr(args, "precision", None)}
    cluster = {"dask_address": getattr(args, "dask_address", None), "shared_path": getattr(args, "shared_path", False)}
    if _orchestrated(args):
        if any(v is not None for v in speed.values()):
            raise ValueError("--images-per-batch/--precision with --prefect: put them in a JSON config instead")
        out = precompute(dataset=args.dataset, root=args.root, store=args.store, config=args.config,
                         classes=args.classes, name=name, shard_size=shard, device=device, verify=verify,
                         patches=patches, split=split, fusions=list(getattr(args, "fusions", ())), **cluster)
    else:
        out = run_precompute(read_dataset(args.dataset, args.root, args.classes, split), dataset_name(args.dataset, name),
                             args.store, load_pipeline_config(args.config, device=device, patches=patches, **speed), shard,
                             verify=verify, fusions=tuple(getattr(args, "fusions", ())), **cluster)
    _report_failures("precompute", out)
    if cluster["dask_address"]:
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
    if args.command == "aggregate":
        from .aggregate import aggregate, run_variants
        kw = dict(store=args.store, dataset=args.dataset, config=args.config, variants=_few_shot_spec(args),
                  classes=args.classes, scheduler=args.scheduler, dask_address=args.dask_address, save_maps=args.save_maps,
                  shared_path=args.shared_path)
        if _orchestrated(args):
            return aggregate(**kw)
        return {vh: o.summary() for vh, o in run_variants(**kw).items()}
    if args.command == "evaluate":
        from .evaluate import evaluate, run_evaluate
        if args.root and args.read_only:
            raise ValueError("--root precomputes into the store; with --read-only run it without --root")
        if args.root:
            if _precompute(args)["failed"]:
                raise ValueError("some images of the data set could not be computed (listed above); fix or remove "
                                 "them: metrics over part of a data set would not compare with published ones")
        fn = evaluate if _orchestrated(args) else run_evaluate
        fn(store=args.store, dataset=args.dataset, config=args.config,
           variants=_few_shot_spec(args), classes=args.classes, out_dir=args.out, pixel_size=args.pixel_size, fpr=args.fpr, save_maps=args.save_maps,
           read_only=args.read_only, device=args.device or "cpu", dask_address=args.dask_address,
           shared_path=args.shared_path)
        return {"quiet": True}
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
    args = build_parser().parse_args(argv)
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
    except (ValueError, TypeError, OSError) as exc:
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
