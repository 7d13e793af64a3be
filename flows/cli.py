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
import dataclasses
import json
import os
import signal
import sys
import threading
from typing import Any

from .commands import COMMANDS, add_command, request_of
from .settings import apply_defaults

EXIT_PARTIAL, EXIT_ERROR, EXIT_INTERRUPTED = 1, 2, 130


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``zsad`` parser. Only the command ``argv`` names gets its options (``zsad --help`` and
    every other command start without importing a flow, Prefect or Dask); ``argv`` None builds
    every command."""
    named = next((a for a in (argv or []) if not a.startswith("-")), None)
    ap = argparse.ArgumentParser(prog="zsad", description="Zero-shot industrial anomaly detection (cached DAG).")
    sub = ap.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        add_command(sub, name, argv is None or named == name)
    return ap


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _orchestrated(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "prefect", False) or os.environ.get("PREFECT_API_URL"))


def _report_failures(command: str, failed, done: int) -> None:
    for f in failed:
        print(f"zsad {command}: error: {f.text()}", file=sys.stderr)
    if failed:
        print(f"zsad {command}: {done} images done, {len(failed)} failed (listed above)", file=sys.stderr)


def _precompute(request, orchestrated: bool) -> dict[str, Any]:
    """``precompute`` (also ``evaluate --root``): the result's summary, failures and skipped files told."""
    out = COMMANDS["precompute"].function(orchestrated)(request)
    _report_failures("precompute", out.failed, len(out.done))
    if request.dask_address:
        for worker, w in sorted(out.workers.items(), key=lambda kv: str(kv[0])):
            loads = ", ".join(f"{k} {v}" for k, v in sorted(w.models_loaded.items())) or "none (already loaded)"
            print(f"zsad precompute: worker {worker}: {w.images} images in {w.shards} shards; "
                  f"models loaded: {loads}", file=sys.stderr)
    summary = out.summary()
    if request.dataset == "folder":
        from zsad.datasets import scan_folder
        skipped = scan_folder(request.root)[1]
        for path, why in skipped:
            print(f"zsad precompute: skipped {path}: {why}", file=sys.stderr)
        summary["skipped"] = [{"path": p, "reason": why} for p, why in skipped]
    return summary


def _evaluate(request, orchestrated: bool) -> dict[str, Any]:
    if request.root:
        from .command_requests import PrecomputeRequest
        pre = PrecomputeRequest(**{f.name: getattr(request, f.name) for f in dataclasses.fields(PrecomputeRequest)
                                   if hasattr(request, f.name)})
        if _precompute(pre, orchestrated)["failed"]:
            raise ValueError("some images of the data set could not be computed (listed above); fix or remove "
                             "them: metrics over part of a data set would not compare with published ones")
    COMMANDS["evaluate"].function(orchestrated)(request)
    return {"quiet": True}


def run(args: argparse.Namespace) -> Any:
    """Serve the command ``args`` name: its request from the options, to its function or flow."""
    cmd = COMMANDS[args.command]
    request = request_of(args, cmd.request)
    orchestrated = _orchestrated(args) and cmd.flow
    if args.command == "precompute":
        return _precompute(request, orchestrated)
    if args.command == "evaluate":
        return _evaluate(request, orchestrated)
    out = cmd.function(orchestrated)(request)
    if args.command == "demo":
        pre, again = out["precompute"], out["cached_rerun"]
        print(f"\nzsad demo: {pre.n_images} images, {out['heatmaps']} heatmaps in {request.out}/heatmaps, metrics in "
              f"{request.out}/results, report {out['report']}; cached re-run wrote {again.units_written} units and "
              f"loaded {again.models_loaded} models; {out['seconds']:.1f} s. (Tiny random-weight models: the numbers "
              "show the pipeline runs, not accuracy.)")
        return out
    if args.command == "predict":
        return {"n_scored": out["n_scored"], "n_failed": out["n_failed"], "quiet": True}
    if args.command == "calibrate":
        from zsad.tasks.failures import Failure
        _report_failures("calibrate", [Failure.from_record(f) for f in out["failed"]], out["n_images"])
    if args.command == "report":
        return {"report": str(out)}
    return out


def _terminated(signum, frame) -> None:
    """SIGTERM as Ctrl-C: the command unwinds, so what it started (Prefect's ephemeral API
    server, a Dask client, a file observer) is stopped by its own exit handlers."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    apply_defaults()
    if getattr(args, "storage_options", None):
        from zsad.stores.options import STORAGE_OPTIONS_ENV
        if getattr(args, "dask_address", None):  # the workers would open the store without them
            print(f"zsad {args.command}: error: --storage-options reach this process only; with --dask-address set "
                  f"${STORAGE_OPTIONS_ENV} in every worker's environment (and here) instead", file=sys.stderr)
            return EXIT_ERROR
        os.environ[STORAGE_OPTIONS_ENV] = args.storage_options  # tasks and child processes open it alike
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        out = run(args)
    except (ValueError, OSError) as exc:  # bad input; a TypeError is a bug: its traceback is shown
        print(f"zsad {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"zsad {args.command}: interrupted; finished units are kept, the rest is recomputed next time",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    quiet = isinstance(out, dict) and out.pop("quiet", False)  # the command printed its own table
    if not quiet and args.command != "demo":
        _print(out)
    failed = isinstance(out, dict) and (out.get("n_failed") or out.get("failed"))
    return EXIT_PARTIAL if failed else 0

if __name__ == "__main__":
    sys.exit(main())
