"""A Dask cluster on SLURM (dask-jobqueue) and a ``cathodeflow run`` on it.

Run on a login node, in the venv (or container) that the workers use::

    python deploy/slurm/slurm_cluster.py --config deploy/slurm/jobqueue.yaml \\
        --store /shared/lab/study.zarr [-- --phase-method unet …]

It starts the scheduler here, submits ``cathodeflow.jobs`` SLURM jobs of workers (sizes from
the ``jobqueue.slurm`` section of the YAML file, Dask's own schema), prints the scheduler
address and the dashboard link, runs ``cathodeflow run --store S --scheduler ADDRESS …`` and
cancels the jobs when that run ends (Ctrl-C included). With a ``cathodeflow.tls`` section
scheduler, workers and client talk TLS only (``distributed.Security``). ``--dry-run`` prints
the SLURM job script and submits nothing.

The store must be a folder that this node and the compute nodes see at the same path.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from cathodeflow.errors import CathodeflowError, InputError, one_line

#: Keys of ``jobqueue.slurm`` that every configuration must set.
REQUIRED_SLURM_KEYS = ("cores", "memory", "walltime", "queue")
#: Keys of ``cathodeflow.tls``: the CA certificate, and the certificate and key that the
#: scheduler, the workers and the client all present.
TLS_KEYS = ("ca_file", "cert", "key")


def load_config(path: str | Path) -> tuple[dict, dict]:
    """Read ``jobqueue.yaml``.

    Parameters
    ----------
    path : str or Path
        A YAML file with the sections ``jobqueue.slurm`` (dask-jobqueue's keys) and,
        optionally, ``cathodeflow`` (``jobs``, ``tls``).

    Returns
    -------
    config : dict
        The whole file, to be merged into Dask's configuration.
    options : dict
        ``jobs`` (int, default 1) and ``tls`` (dict of :data:`TLS_KEYS` to absolute paths,
        or None).

    Raises
    ------
    InputError
        The file is missing or not YAML, a required key is absent, a TLS file is missing.
    """
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise InputError(f"--config {path}: cannot be read as YAML ({one_line(e)})") from None
    slurm = (config or {}).get("jobqueue", {}).get("slurm") if isinstance(config, dict) else None
    if not isinstance(slurm, dict):
        raise InputError(f"--config {path}: no 'jobqueue: slurm:' section; expected dask-jobqueue's schema")
    missing = [k for k in REQUIRED_SLURM_KEYS if slurm.get(k) in (None, "")]
    if missing:
        raise InputError(f"--config {path}: jobqueue.slurm lacks {', '.join(missing)}; expected all of {REQUIRED_SLURM_KEYS}")
    own = config.get("cathodeflow") or {}
    jobs = own.get("jobs", 1)
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise InputError(f"--config {path}: cathodeflow.jobs is {jobs!r}; expected a positive integer")
    tls = own.get("tls")
    if tls is not None:
        if not isinstance(tls, dict) or sorted(tls) != sorted(TLS_KEYS):
            raise InputError(f"--config {path}: cathodeflow.tls has {tls!r}; expected the keys {TLS_KEYS}")
        tls = {k: Path(os.path.expandvars(str(v))).expanduser().resolve() for k, v in tls.items()}
        absent = [f"{k}={p}" for k, p in tls.items() if not p.is_file()]
        if absent:
            raise InputError(f"--config {path}: cathodeflow.tls files not found: {', '.join(absent)}")
    return config, {"jobs": jobs, "tls": tls}


def make_security(tls: dict | None):
    """The ``distributed.Security`` of a TLS-only cluster, or None for plain TCP.

    Parameters
    ----------
    tls : dict or None
        ``ca_file``, ``cert``, ``key`` (paths) as returned by :func:`load_config`.

    Returns
    -------
    distributed.Security or None
        One certificate and key for scheduler, workers and client, all checked against
        ``ca_file``; unencrypted connections refused.
    """
    if tls is None:
        return None
    from distributed import Security

    ca, cert, key = (str(tls[k]) for k in TLS_KEYS)
    return Security(
        tls_ca_file=ca,
        tls_scheduler_cert=cert,
        tls_scheduler_key=key,
        tls_worker_cert=cert,
        tls_worker_key=key,
        tls_client_cert=cert,
        tls_client_key=key,
        require_encryption=True,
    )


def client_environment(tls: dict | None, *, base: dict | None = None) -> dict:
    """Environment of the ``cathodeflow run`` subprocess: ``base`` (default ``os.environ``)
    plus, with ``tls``, Dask's client TLS settings (``distributed.Security()`` reads them)."""
    env = dict(os.environ if base is None else base)
    if tls is not None:
        env.update(
            DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION="True",
            DASK_DISTRIBUTED__COMM__TLS__CA_FILE=str(tls["ca_file"]),
            DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT=str(tls["cert"]),
            DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY=str(tls["key"]),
        )
    return env


def cathodeflow_command(store: str, scheduler_address: str, extra: list[str]) -> list[str]:
    """``cathodeflow run --store STORE --scheduler ADDRESS EXTRA…``, with the ``cathodeflow``
    of this Python's environment."""
    exe = Path(sys.executable).with_name("cathodeflow")
    program = str(exe) if exe.exists() else (shutil.which("cathodeflow") or "cathodeflow")
    return [program, "run", "--store", store, "--scheduler", scheduler_address, *extra]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="slurm_cluster.py",
        description="Start a Dask cluster on SLURM and run `cathodeflow run` on it.",
        epilog="Arguments after `--` go to `cathodeflow run` (e.g. -- --phase-method unet).",
    )
    parser.add_argument("--config", default=str(Path(__file__).with_name("jobqueue.yaml")),
                        help="jobqueue.yaml (default: the one next to this script)")
    parser.add_argument("--store", help="the study store (a folder the compute nodes see)")
    parser.add_argument("--jobs", type=int, help="SLURM jobs to submit (default: cathodeflow.jobs)")
    parser.add_argument("--dry-run", action="store_true", help="print the job script, submit nothing")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    args = parser.parse_args(argv)
    args.extra = extra
    return args


def main(argv: list[str] | None = None) -> int:
    """Command line; returns the exit status (that of ``cathodeflow run``, 2 on bad input)."""
    args = parse_args(argv)
    try:
        config, options = load_config(args.config)
        if args.jobs is not None and args.jobs < 1:
            raise InputError(f"--jobs {args.jobs}: expected a positive integer")
        if not args.dry_run and not args.store:
            raise InputError("--store: missing; expected the study store's folder")
        return _run(config, options, args)
    except CathodeflowError as e:
        print(f"slurm_cluster.py: error: {one_line(e)}", file=sys.stderr)
        return 2


def _run(config: dict, options: dict, args: argparse.Namespace) -> int:
    import dask
    from dask_jobqueue import SLURMCluster

    security = make_security(options["tls"])
    dask.config.update(dask.config.config, {"jobqueue": config["jobqueue"]}, priority="new")
    kwargs = {"protocol": "tls://", "security": security} if security is not None else {}
    with SLURMCluster(**kwargs) as cluster:
        if args.dry_run:
            print(cluster.job_script())
            return 0
        jobs = args.jobs or options["jobs"]
        cluster.scale(jobs=jobs)
        print(f"scheduler: {cluster.scheduler_address}", flush=True)
        print(f"dashboard: {cluster.dashboard_link}", flush=True)
        print(f"submitted {jobs} SLURM job(s); the run starts on the workers as they join", flush=True)
        command = cathodeflow_command(args.store, cluster.scheduler_address, args.extra)
        try:
            return subprocess.run(command, env=client_environment(options["tls"]), check=False).returncode
        except KeyboardInterrupt:
            return 130  # cathodeflow run had the same Ctrl-C and stopped; the jobs are cancelled


if __name__ == "__main__":
    sys.exit(main())
