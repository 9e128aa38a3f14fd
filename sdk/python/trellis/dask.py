"""Dask graphs on trellis: trellis.dask.get runs a Dask task graph as calls
into a Python library, with every intermediate value a temp file that stays
on the workers and moves worker to worker; only the values of the keys asked
for come back to the client.

    import dask.array as da
    x = da.ones((1000, 1000), chunks=100).sum()
    x.compute(scheduler=cluster.dask_get)

Needs dask on the client and on the workers (where the library runs).
"""

import os
import pickle
import shutil
import tempfile

from . import errors
from .client import Call
from .files import CACHE_TASK, Buffer, Output, Temp
from .executor import python_library

LIBRARY = "trellis-dask"

try:
    import cloudpickle as _dumper  # lambdas and closures of dask.delayed
except ImportError:  # pragma: no cover - dask depends on cloudpickle
    _dumper = pickle


def get(dsk, keys, cluster=None, *, python=None, env=None, slots=1, **kwargs):
    """get computes keys (a key, or nested lists of keys) of the Dask graph
    dsk on cluster and returns their values in the same structure. Graph
    tasks run as calls of the library "trellis-dask" (python: the
    interpreter on the workers, by default this one on a local cluster and
    python3 otherwise; env: its environment). A task that fails raises its
    CallError, and the rest of the graph is cancelled."""
    if cluster is None:
        raise errors.InvalidError("trellis.dask.get: give cluster=, or use cluster.dask_get as the scheduler")
    import dask.core
    from dask.core import get_dependencies, istask, toposort

    dsk = dict(dsk)
    python_library(cluster, "_dask_lib.py", LIBRARY, python, env, slots)

    def resolve(k):
        """resolve follows aliases (a key whose value is another key)."""
        seen = 0
        while k in dsk and not istask(dsk[k]) and _is_key(dsk[k], dsk) and seen < len(dsk):
            k = dsk[k]
            seen += 1
        return k

    wanted = set(_flatten(keys))
    for k in wanted:
        if k not in dsk:
            raise errors.InvalidError("trellis.dask.get: key %r is not in the graph" % (k,))
    targets = {resolve(k) for k in wanted}  # the keys whose values come back
    files = {}   # key -> File holding its value
    tasks = []
    out_dir = tempfile.mkdtemp(prefix="trellis-dask-")
    outputs = {}  # key -> local path of its value
    try:
        for k in toposort(dsk):
            v = dsk[k]
            if _is_key(v, dsk) and not istask(v):
                continue  # an alias: resolved where used
            if not istask(v) and not isinstance(v, (list, tuple)):
                files[k] = Buffer(pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL))
                continue
            deps = sorted({resolve(d) for d in get_dependencies(dsk, k)}, key=repr)
            # Aliases inside the task read their target's value.
            alias = {d: resolve(d) for d in get_dependencies(dsk, k) if resolve(d) != d}
            body = _dumper.dumps((_substitute(v, alias) if alias else v, deps), protocol=pickle.HIGHEST_PROTOCOL)
            t = Call(LIBRARY, "run", body, raw=True, name="dask " + _short(k), retries=3)
            for i, d in enumerate(deps):
                t.add_input(files[d], "d%d" % i)
            if k in targets:
                outputs[k] = os.path.join(out_dir, "v%d" % len(outputs))
                f = Output(outputs[k])
            else:
                f = Temp().cache(CACHE_TASK)  # dropped once its readers are done
            t.add_output(f, "out")
            files[k] = f
            tasks.append(t)
        futures = cluster.submit(tasks) if tasks else []
        try:
            for f in futures:
                f.result()
        except BaseException:
            ids = [f.task_id for f in futures if not f.done() and f.task_id is not None]
            if ids:
                cluster.cancel(*ids)
            raise
        values = {}
        for k in wanted:
            r = resolve(k)
            if r in outputs:
                with open(outputs[r], "rb") as fh:
                    values[k] = pickle.load(fh)
            else:  # a literal of the graph
                values[k] = pickle.loads(files[r].data)
        return _pack(keys, values)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def _is_key(v, dsk):
    try:
        return v in dsk
    except TypeError:
        return False


def _substitute(task, alias):
    from dask.core import subs
    for a, b in alias.items():
        task = subs(task, a, b)
    return task


def _flatten(keys):
    if isinstance(keys, list):
        for k in keys:
            yield from _flatten(k)
    else:
        yield keys


def _pack(keys, values):
    if isinstance(keys, list):
        return [_pack(k, values) for k in keys]
    return values[keys]


def _short(k):
    s = str(k)
    return s if len(s) <= 100 else s[:97] + "..."
