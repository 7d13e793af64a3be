"""The ``zsad`` command line.

Commands run as plain Python by default: no Prefect API, no ephemeral server to start (seconds,
and a point of failure on a busy machine). ``--prefect`` (or a configured ``PREFECT_API_URL``)
runs the command as its Prefect flow instead, so it shows in the Prefect UI. What a command
returned is shown as its declaration in the command table says (``zsad.flows.results``).

Exit codes: 0 done; 1 done, but some images failed (they are listed); 2 a usage or input
error (nothing was scored); 130 interrupted (finished units are kept).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from zsad import __version__

from .commands import COMMANDS, add_command, request_of
from .results import Shown
from .settings import apply_defaults

EXIT_PARTIAL, EXIT_ERROR, EXIT_INTERRUPTED = 1, 2, 130


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``zsad`` parser. Only the command ``argv`` names gets its options (``zsad --help`` and
    every other command start without importing a flow, Prefect or Dask); ``argv`` None builds
    every command."""
    named = next((a for a in (argv or []) if not a.startswith("-")), None)
    ap = argparse.ArgumentParser(prog="zsad", description="Zero-shot industrial anomaly detection (cached DAG).")
    ap.add_argument("--version", action="version", version=f"zsad {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        add_command(sub, name, argv is None or named == name)
    return ap


def _orchestrated(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "prefect", False) or os.environ.get("PREFECT_API_URL"))


def run(args: argparse.Namespace) -> Shown:
    """Serve the command ``args`` name: its request from the options, to its function or flow, and
    the result as the command table says it is shown."""
    cmd = COMMANDS[args.command]
    out = cmd.function(_orchestrated(args) and cmd.flow is not None)(request_of(args, cmd.request))
    return cmd.shown(out)


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
    out.show()
    return EXIT_PARTIAL if out.exit_code else 0

if __name__ == "__main__":
    sys.exit(main())
