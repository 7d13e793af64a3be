"""A real S3-compatible server on 127.0.0.1 (moto's standalone server) for tests, benchmarks
and trying a shared cache without a cloud account.

    with LocalS3() as s3:                      # a separate process, like a real server
        s3.make_bucket("team")
        env = s3.env()                         # credentials + ZSAD_STORAGE_OPTIONS for zsad processes
        subprocess.run(["zsad", "precompute", ..., "--store", "s3://team/zsad.zarr"], env=env)

Needs ``moto[server]`` and ``s3fs`` (the ``test`` extra). The credentials are moto's dummy ones.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalS3:
    """moto's S3 server in a child process; ``endpoint_url`` while it runs."""

    def __init__(self, log: str | Path | None = None, start_timeout_s: float = 30.0) -> None:
        self.port = _free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log) if log else None
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "LocalS3":
        import importlib.util
        missing = [m for m in ("moto", "flask", "s3fs") if importlib.util.find_spec(m) is None]
        if missing:
            raise RuntimeError(f"a local S3 server needs moto[server] and s3fs ({', '.join(missing)} missing): "
                               "pip install 'moto[server]' s3fs")
        log = open(self.log_path, "w") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **DUMMY_CREDENTIALS})
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the moto S3 server exited at start (code {self.proc.returncode})")
            try:
                urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1).close()
                return self
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"the moto S3 server did not answer on {self.endpoint_url} in {self.start_timeout_s:.0f} s")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def storage_options(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url}

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment for zsad processes: dummy credentials and ``ZSAD_STORAGE_OPTIONS``."""
        return {**(os.environ if base is None else base), **DUMMY_CREDENTIALS,
                "ZSAD_STORAGE_OPTIONS": json.dumps(self.storage_options())}

    def filesystem(self):
        import s3fs
        return s3fs.S3FileSystem(endpoint_url=self.endpoint_url, key=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                 secret=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"], use_listings_cache=False,
                                 skip_instance_cache=True)  # see other processes' writes at once

    def make_bucket(self, name: str) -> str:
        fs = self.filesystem()
        if not fs.exists(name):
            fs.mkdir(name)
        return f"s3://{name}"
