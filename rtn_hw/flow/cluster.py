"""Where a sweep's runs execute: a Dask `distributed` cluster, local or remote.

`make synth` and `make explore` hand every elaboration, synthesis and power estimate to Dask as
an independent task. By default that is a `LocalCluster` on this machine: worker *processes*
(one thread each: yosys and nextpnr are CPU-bound subprocesses, and Amaranth's elaboration holds
the GIL), as many as asked but never more than the cores this process may use. With
`scheduler="tcp://HOST:PORT"` the runs go to an existing cluster instead (for example one that
`dask-jobqueue` started on Slurm, docs/synth.md); its workers need the same rtn-hw checkout and
venv on a shared file system, since the tools run in `<repo>/build/` on the worker.

Dask reschedules the tasks of a worker that dies on another worker; the client alone writes
the cache (`rtn_hw.flow.cache`, atomically), so a killed worker leaves no half-written entry.
"""

import contextlib
import logging
import os

__all__ = ["ClusterError", "local_cores", "check_jobs", "worker_memory", "open_client",
           "ALLOWED_FAILURES", "CONNECT_SECONDS"]

# A task whose worker dies once more than this is given up (KilledWorker) and the run recorded
# as failed: a run that kills every worker it lands on (out of memory) must not loop forever.
ALLOWED_FAILURES = 3
CONNECT_SECONDS = 20      # how long to try an existing scheduler's address


class ClusterError(Exception):
    """The scheduler given cannot be reached; one line naming it."""


def local_cores():
    """Cores this process may run on (the affinity mask: a Slurm or container limit counts)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:          # not Linux
        return os.cpu_count() or 1


def check_jobs(jobs):
    """`jobs` local workers, or a one-line ValueError when this machine cannot run them."""
    cores = local_cores()
    if not isinstance(jobs, int) or isinstance(jobs, bool) or not 1 <= jobs <= cores:
        raise ValueError(f"JOBS: {jobs!r} is not a job count; valid jobs: integers from 1 to "
                         f"{cores} (this machine's cores)")
    return jobs


def worker_memory(jobs):
    """Bytes each of `jobs` local workers may use: an equal share of this machine's memory."""
    import psutil
    return psutil.virtual_memory().total // jobs


def _ignore(signum, frame):
    pass


def dask_setup(worker):
    """Preloaded into every local worker process (Dask calls it by this name): Ctrl-C at the
    terminal reaches the whole process group, and the client stops the workers itself, so a
    worker catches SIGINT and does nothing rather than print a KeyboardInterrupt traceback.
    A handler, not SIG_IGN: a caught signal is reset for the tools the worker starts, so
    yosys and nextpnr still stop on Ctrl-C instead of running on without their worker."""
    import signal
    signal.signal(signal.SIGINT, _ignore)


@contextlib.contextmanager
def open_client(jobs=None, scheduler=None, *, memory_limit=None):
    """A `distributed.Client`: on `scheduler` if given, else on a LocalCluster of `jobs` worker
    processes (default: every core), each allowed `memory_limit` bytes (default: an equal
    share of the machine's memory); closed (workers stopped) when the block ends, also on
    Ctrl-C."""
    import dask
    from distributed import Client, LocalCluster
    # Saturation 1.0: a worker holds only the run it is running, none queued behind it, so a
    # run that kills its worker does not count a death against a run that was only waiting
    # there (the default 1.1 queues one more per single-thread worker).
    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
                          "distributed.scheduler.worker-saturation": 1.0}):
        if scheduler:
            try:
                client = Client(scheduler, set_as_default=False, timeout=CONNECT_SECONDS)
            except OSError as error:
                raise ClusterError(f"--scheduler {scheduler}: cannot connect "
                                   f"({' '.join(str(error).split())})") from None
            with client:
                yield client
            return
        jobs = check_jobs(jobs or local_cores())
        memory = memory_limit or worker_memory(jobs)
        with LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                          memory_limit=memory, dashboard_address=":0",
                          preload=[__name__],
                          silence_logs=logging.ERROR) as cluster, \
                Client(cluster, set_as_default=False) as client:
            yield client
