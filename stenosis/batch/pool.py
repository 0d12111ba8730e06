"""Batch worker processes (and the same work on a Dask cluster).

Each worker is a separate process (``forkserver`` start method on Linux, ``spawn``
elsewhere; never ``fork``, which is unsafe once torch has started threads). A worker
warms up once (imports, model weights, skan's numba kernels), then measures tasks one
at a time and retires after ``max_tasks_per_child`` tasks so memory stays flat over
thousands of runs. The pool is a small one of our own rather than
:class:`concurrent.futures.ProcessPoolExecutor`: the executor cannot kill one hung task
without breaking the whole pool, and does not say when a queued task actually started,
so a per-run timeout could not be measured honestly. Here the parent sends a task only
to an idle, warmed-up worker, so the timeout counts measurement time only; a worker
past its deadline is killed and replaced, and its run becomes an error row. A worker
exits at once when the batch process dies (its end of the pipe hangs up).
"""
from __future__ import annotations

import functools
import gc
import multiprocessing as mp
import os
import select
import sys
import threading
import time
import warnings
from collections import deque
from multiprocessing.connection import wait as _mp_wait
from typing import Any, Callable, Sequence

from ..errors import InputError, MissingExtraError
from .outputs import output_stem
from .tasks import Task
from .work import WorkOptions, error_row, exc_message, measure_one

__all__ = ["warm_up", "release_memory", "run_processes", "run_inline", "run_dask", "DEFAULT_MAX_TASKS_PER_CHILD"]

DEFAULT_MAX_TASKS_PER_CHILD = 100


def _peak_rss_mb() -> float:
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 1024.0 if sys.platform != "darwin" else kb / 2**20
    except Exception:
        return float("nan")


def warm_up(model: str = "unet", *, auto: bool = True) -> None:
    """Load what every run needs once per worker: model weights, and for --auto torch (one
    thread) and skan's numba kernels. Best effort: a failure here shows up in the runs' rows."""
    if auto:
        try:
            import torch

            torch.set_num_threads(1)  # determinism across --jobs and no oversubscription
        except Exception:
            pass
    try:
        import numpy as np

        from ..segmentation import vessel_probability

        frame = np.full((64, 64), 1000, np.uint16)
        frame[30:34, 4:60] = 400
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "weights not shipped": the runs' rows say it
            vessel_probability(frame, model=model)
    except Exception:
        pass
    if auto:
        try:
            from ..auto import warm_up as auto_warm

            auto_warm()
        except Exception:
            pass


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim`` (None elsewhere: musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        fn = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def release_memory() -> None:
    """Give back what one run left behind, so a worker's memory does not creep.

    Two things, both measured (``benchmarks/batch.py --memory``): each run's PNG
    report leaves a matplotlib Figure (thousands of objects in reference cycles,
    plus its Agg buffer) that only a full collection frees, which a worker with
    torch and scipy loaded runs rarely, so RSS saw-toothed by tens of MB; and
    glibc keeps freed heap pages of the large per-run arrays mapped. A collection
    after :func:`gc.freeze` (done once after warm-up) scans only objects made
    since, and ``malloc_trim(0)`` returns the free pages to the OS.
    """
    gc.collect()
    fn = _malloc_trim()
    if fn is not None:
        try:
            fn(0)
        except Exception:
            pass


def _exit_with_parent(conn) -> None:
    """Exit this worker at once when the batch process dies: its end of the pipe hangs up
    (``POLLRDHUP``; elsewhere the parent process id changes)."""
    rdhup = getattr(select, "POLLRDHUP", None)
    if rdhup is not None:
        poller = select.poll()
        poller.register(conn.fileno(), rdhup)

        def watch() -> None:
            while not poller.poll():
                pass
            os._exit(0)
    else:
        ppid = os.getppid()

        def watch() -> None:
            while os.getppid() == ppid:
                time.sleep(0.5)
            os._exit(0)

    threading.Thread(target=watch, name="stenosis-parent-watch", daemon=True).start()


def _worker_main(conn, work, options, max_tasks, warm) -> None:
    _exit_with_parent(conn)
    # Python warnings would scribble over the parent's progress bar; what matters
    # for a run is in its row (result warnings, error message)
    warnings.simplefilter("ignore")
    if warm:
        if isinstance(options, WorkOptions):
            warm_up(options.model, auto=options.auto)
        else:
            warm_up()
    # what warm-up loaded (modules, weights) lives as long as the worker: move it out
    # of the collector's generations, so the per-run full collection stays cheap
    gc.collect()
    gc.freeze()
    try:
        conn.send(("ready", os.getpid(), _peak_rss_mb()))
        done = 0
        while True:
            msg = conn.recv()
            if msg is None:
                break
            idx, task = msg
            try:
                row = work(task, options)
            except BaseException as exc:  # work functions should not raise; keep the batch alive
                row = error_row(task, exc_message(exc))
            release_memory()
            done += 1
            retire = done >= max_tasks
            conn.send(("done", idx, row, _peak_rss_mb(), retire))
            if retire:
                break
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        conn.close()


def _mp_context(*, heavy: bool = True, torch_too: bool = False):
    methods = mp.get_all_start_methods()
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        # heavy imports happen once in the fork server (if it is not running yet), so
        # every new or replaced worker starts with the pipeline imported; torch only for
        # --auto (whole-frame U-Net maps): the measurement's crops run on numpy
        mods = ["stenosis.batch"]
        if heavy:
            mods += ["numpy", "scipy.ndimage", "stenosis.measurement", "stenosis.auto"]
            if torch_too:
                mods.append("torch")
        ctx.set_forkserver_preload(mods)
        return ctx
    return mp.get_context("spawn")


class _Worker:
    def __init__(self, ctx, work, options, max_tasks, warm):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=_worker_main, args=(child, work, options, max_tasks, warm), daemon=True
        )
        self.proc.start()
        child.close()
        self.ready = False
        self.retiring = False
        self.task: tuple[int, Task, float] | None = None  # (index, task, start time)

    def kill(self) -> None:
        try:
            self.proc.kill()
        except Exception:
            pass
        self.proc.join(5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except Exception:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.kill()
        else:
            self.conn.close()


def run_processes(
    tasks: Sequence[Task],
    work: Callable,
    options: Any,
    *,
    jobs: int,
    timeout: float | None,
    max_tasks_per_child: int,
    warm: bool,
    on_row: Callable[[dict[str, Any]], None],
    rss: dict[int, float],
) -> int:
    """Run tasks on `jobs` worker processes; call ``on_row`` in the parent per finished row.

    Returns the number of timed-out tasks.
    """
    ctx = _mp_context(heavy=work is measure_one, torch_too=bool(getattr(options, "auto", False)))
    pending = deque(enumerate(tasks))
    workers: list[_Worker] = []
    n_timeout = 0
    start_failures = 0

    def spawn() -> None:
        workers.append(_Worker(ctx, work, options, max_tasks_per_child, warm))

    try:
        while pending or any(w.task for w in workers):
            busy = sum(1 for w in workers if w.task)
            want = min(jobs, busy + len(pending))
            while len(workers) < want:
                spawn()
            for w in workers:
                if w.ready and not w.retiring and w.task is None and pending:
                    idx, task = pending.popleft()
                    w.task = (idx, task, time.monotonic())
                    try:
                        w.conn.send((idx, task))
                    except (BrokenPipeError, OSError):
                        pass  # its death is noticed below through the sentinel
            deadlines = [w.task[2] + timeout for w in workers if w.task and timeout]
            wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            objs = [w.conn for w in workers] + [w.proc.sentinel for w in workers]
            ready = set(_mp_wait(objs, timeout=wait_s if wait_s is None else min(wait_s, 5.0)))
            for w in list(workers):
                dead = False
                if w.conn in ready:
                    try:
                        while w.conn.poll():
                            msg = w.conn.recv()
                            if msg[0] == "ready":
                                w.ready = True
                                start_failures = 0
                                rss[msg[1]] = max(rss.get(msg[1], 0.0), msg[2])
                            elif msg[0] == "done":
                                _, idx, row, peak, retire = msg
                                rss[w.proc.pid] = max(rss.get(w.proc.pid, 0.0), peak)
                                w.task = None
                                w.retiring = retire
                                on_row(row)
                    except (EOFError, OSError):
                        dead = True
                if dead or w.proc.sentinel in ready and not w.proc.is_alive():
                    w.proc.join(1)
                    if w.task is not None:
                        _, task, _ = w.task
                        code = w.proc.exitcode
                        on_row(error_row(task, f"worker process died while measuring this run (exit code {code}); "
                                               "the file may be too large or corrupt"))
                    elif not w.ready and not w.retiring:
                        start_failures += 1
                        if start_failures >= 3:
                            raise RuntimeError(
                                f"batch worker processes fail to start (exit code {w.proc.exitcode})"
                            )
                    w.kill()
                    workers.remove(w)
                    continue
                if w.retiring and w.task is None:
                    w.stop()
                    workers.remove(w)
                    continue
                if timeout and w.task and time.monotonic() - w.task[2] > timeout:
                    _, task, _ = w.task
                    w.kill()
                    workers.remove(w)
                    n_timeout += 1
                    on_row(error_row(task, f"timed out after {timeout:g} s; the run was skipped "
                                           "(raise --timeout if such runs are expected to be slow)"))
    finally:
        for w in workers:
            if w.task is None and w.ready:
                w.stop()
            else:
                w.kill()
    return n_timeout


def run_inline(tasks, work, options, on_row) -> None:
    for task in tasks:
        try:
            row = work(task, options)
        except Exception as exc:
            row = error_row(task, exc_message(exc))
        on_row(row)


#: seconds to wait for a Dask scheduler to answer before the batch is refused
SCHEDULER_CONNECT_S = 10


def connect_scheduler(scheduler):
    """A dask.distributed client of ``scheduler`` (an address; a client is returned as it is),
    or :class:`InputError` when it does not answer: called before anything is written."""
    if hasattr(scheduler, "submit"):
        return scheduler
    try:
        from distributed import Client
    except ImportError:
        raise MissingExtraError("dask.distributed", "batch") from None
    try:
        return Client(scheduler, timeout=SCHEDULER_CONNECT_S)
    except (OSError, TypeError, ValueError) as exc:  # refused, timed out, or an address it cannot use
        raise InputError(f"cannot reach the Dask scheduler at {scheduler} ({exc}); start it or fix the address") from None


def run_dask(tasks, work, options, *, scheduler, timeout, on_row) -> int:
    """Same per-run work on a dask.distributed cluster (an address, or a client from
    :func:`connect_scheduler`, left open); returns the number of timeouts."""
    own_client = not hasattr(scheduler, "submit")
    client = connect_scheduler(scheduler)
    from distributed import wait  # installed: connect_scheduler said so
    n_timeout = 0
    try:
        slots = max(1, sum(client.nthreads().values()))
        pending = deque(tasks)
        inflight: dict[Any, tuple[Task, float]] = {}
        while pending or inflight:
            while pending and len(inflight) < slots:
                task = pending.popleft()
                fut = client.submit(work, task, options, pure=False, key=f"stenosis-{output_stem(task.key)}-{time.monotonic_ns()}")
                inflight[fut] = (task, time.monotonic())
            deadlines = [t0 + timeout for _, t0 in inflight.values()] if timeout else []
            wait_s = max(0.05, min(deadlines) - time.monotonic()) if deadlines else 5.0
            try:
                wait(list(inflight), timeout=wait_s, return_when="FIRST_COMPLETED")
            except Exception:  # distributed raises TimeoutError subclasses across versions
                pass
            for fut in list(inflight):
                task, t0 = inflight[fut]
                if fut.done():
                    del inflight[fut]
                    try:
                        row = fut.result()
                    except Exception as exc:
                        row = error_row(task, exc_message(exc))
                    on_row(row)
                elif timeout and time.monotonic() - t0 > timeout:
                    del inflight[fut]
                    fut.cancel()
                    n_timeout += 1
                    on_row(error_row(task, f"timed out after {timeout:g} s; the run was skipped "
                                           "(raise --timeout if such runs are expected to be slow)"))
    finally:
        if own_client:
            client.close()
    return n_timeout
