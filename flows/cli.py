"""The ``zsad`` command line: demo, precompute, aggregate, evaluate, report, cache, weights."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .settings import apply_defaults


def _common(p: argparse.ArgumentParser, dataset: bool = True) -> None:
    p.add_argument("--store", default="zsad-store.zarr", help="Zarr store: a path or any fsspec URL")
    p.add_argument("--config", default="tiny", help="'paper' (the seed's models), 'tiny' (random, CPU) or a JSON file")
    if dataset:
        p.add_argument("--dataset", default="synthetic", help="data set name in the store (default: its kind)")
        p.add_argument("--classes", nargs="*", default=None, help="only these classes")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="zsad", description="Zero-shot industrial anomaly detection (cached DAG).")
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="synthetic data + tiny models: the whole pipeline, a table, heatmaps, a report")
    d.add_argument("--out", default="zsad-demo")
    d.add_argument("--image-size", type=int, default=192)
    p = sub.add_parser("precompute", help="compute and cache every expensive stage of a data set")
    _common(p, dataset=False)
    p.add_argument("--dataset", default="synthetic", choices=["visa", "mvtec", "folder", "synthetic"])
    p.add_argument("--root", required=True, help="data set folder")
    p.add_argument("--name", default=None, help="name of the data set in the store (default: its kind)")
    p.add_argument("--classes", nargs="*", default=None)
    p.add_argument("--shard-size", type=int, default=32)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: the config's)")
    a = sub.add_parser("aggregate", help="scores and maps of variants, from the store only (Dask)")
    _common(a)
    a.add_argument("--variants", default="seed", help="'seed', 'grid' or 'fusion=harmonic,geometric;top_fraction=.25,.5'")
    a.add_argument("--scheduler", default="threads", choices=["threads", "processes", "synchronous"])
    a.add_argument("--dask-address", default=None, help="a dask.distributed scheduler, e.g. tcp://host:8786")
    e = sub.add_parser("evaluate", help="metrics per class and mean (F1-max, AUROC, AP, AUPRO)")
    _common(e)
    e.add_argument("--variants", default="seed")
    e.add_argument("--out", default="zsad-results")
    e.add_argument("--pixel-size", type=int, default=None, help="evaluate pixels at this square size (default: full)")
    e.add_argument("--root", default=None, help="with --dataset visa|mvtec: precompute this data set first")
    r = sub.add_parser("report", help="a self-contained HTML report of a run")
    _common(r)
    r.add_argument("--out", default="zsad-report")
    c = sub.add_parser("cache", help="list / size / prune the store")
    c.add_argument("action", choices=["list", "size", "prune"])
    c.add_argument("--store", default="zsad-store.zarr")
    c.add_argument("--keep", nargs="*", default=[], help="prune: configs whose stages are kept")
    c.add_argument("--dry-run", action="store_true")
    w = sub.add_parser("weights", help="expected weight files, their sha256 and where they are looked for")
    w.add_argument("action", choices=["list", "fetch"])
    w.add_argument("--key", default=None, help="fetch: which file (see `zsad weights list`)")
    w.add_argument("--dest", default=None)
    return ap


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


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
        from .precompute import precompute
        return precompute(dataset=args.dataset, root=args.root, store=args.store, config=args.config,
                          classes=args.classes, name=args.name, shard_size=args.shard_size, device=args.device)
    if args.command == "aggregate":
        from .aggregate import aggregate
        return aggregate(store=args.store, dataset=args.dataset, config=args.config, variants=args.variants,
                         classes=args.classes, scheduler=args.scheduler, dask_address=args.dask_address)
    if args.command == "evaluate":
        from .evaluate import evaluate
        if args.root:
            from .precompute import precompute
            precompute(dataset=args.dataset, root=args.root, store=args.store, config=args.config, classes=args.classes)
        evaluate(store=args.store, dataset=args.dataset, config=args.config, variants=args.variants,
                 classes=args.classes, out_dir=args.out, pixel_size=args.pixel_size)
        return {"out": args.out}
    if args.command == "report":
        from .report import build_report
        return {"report": str(build_report(args.store, args.dataset, args.config, args.out))}
    if args.command == "cache":
        from . import cache
        if args.action == "list":
            return cache.list_stages(args.store)
        if args.action == "size":
            rows = cache.list_stages(args.store)
            return {"total_bytes": sum(r["bytes"] or 0 for r in rows),
                    "by_stage": {f"{r['stage']}/{r['hash']}": r["bytes"] for r in rows}}
        return {"deleted" if not args.dry_run else "would_delete": cache.prune(args.store, args.keep, args.dry_run)}
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
    try:
        out = run(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"zsad {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"zsad {args.command}: interrupted; finished units are kept, the rest is recomputed next time",
              file=sys.stderr)
        return 130
    if args.command not in ("demo", "evaluate"):
        _print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
