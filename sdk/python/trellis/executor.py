"""trellis.Executor: a concurrent.futures.Executor that runs Python
functions on the cluster, as calls of an auto-installed library."""

import concurrent.futures
import os
import pickle
import sys

from . import errors
from .client import Call
from .library import Library

try:
    import cloudpickle as _cloudpickle
except ImportError:
    _cloudpickle = None


def python_library(cluster, script, name, python=None, env=None, slots=1):
    """python_library installs the library script of this package (once per
    cluster and name) and returns it. On a local cluster it runs with this
    interpreter and this sys.path, so that it imports what the client does;
    elsewhere with python3 (or python, env)."""
    installed = cluster.__dict__.setdefault("_py_libraries", {})
    if name in installed:
        return installed[name]
    if python is None:
        local = getattr(cluster, "local", None) is not None
        python = sys.executable if local else "python3"
        if local and env is None:
            env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), script)
    lib = Library.from_module(path, name, python=python, env=env, slots=slots, cores=1)
    cluster.install(lib)
    installed[name] = lib
    return lib


def dumps(fn, args, kwargs):
    """dumps pickles a call: with the standard pickle (module-level functions),
    else with cloudpickle (closures, lambdas) when it is installed."""
    try:
        return pickle.dumps((fn, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        if _cloudpickle is None:
            raise errors.InvalidError("trellis.Executor: %s cannot be sent with the standard pickle (%s): define it at the "
                                      "top level of a module, or install cloudpickle" % (_name(fn), e)) from None
        try:
            return _cloudpickle.dumps((fn, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e2:
            raise errors.InvalidError("trellis.Executor: %s or its arguments cannot be pickled, even with cloudpickle: %s"
                                      % (_name(fn), e2)) from None


def _name(fn):
    return "function %s.%s" % (getattr(fn, "__module__", "?"), getattr(fn, "__qualname__", repr(fn)))


class Executor(concurrent.futures.Executor):
    """Executor runs fn(*args, **kwargs) remotely: submit returns a future of
    its value; a function that raises fails the future with CallError (the
    remote traceback in it). python, env: the interpreter on the workers and
    its environment (see python_library); options: Call's (time_limit, ...)."""

    def __init__(self, cluster, *, python=None, env=None, slots=4, **options):
        self._cluster = cluster
        self._python, self._env, self._slots = python, env, slots
        self._options = options
        self._futures = set()

    def submit(self, fn, /, *args, **kwargs):
        body = dumps(fn, args, kwargs)
        lib = python_library(self._cluster, "_exec_lib.py", "trellis-executor", self._python, self._env, self._slots)
        inner = self._cluster.submit(Call(lib.name, "run", body, raw=True, name=_name(fn)[9:], **self._options))[0]
        outer = _Unpickled(inner)
        self._futures.add(outer)
        return outer

    def shutdown(self, wait=True, *, cancel_futures=False):
        for f in list(self._futures):
            if cancel_futures:
                f.cancel()
            elif wait:
                concurrent.futures.wait([f])
        self._futures.clear()


class _Unpickled(concurrent.futures.Future):
    """_Unpickled is the value of a call whose result is a pickle."""

    def __init__(self, inner):
        super().__init__()
        self.task_id = inner.task_id
        self._inner = inner
        inner.add_done_callback(self._settle)

    def _settle(self, inner):
        if inner.cancelled():
            super().cancel()
            return
        try:
            value = pickle.loads(inner.result())
        except BaseException as e:
            self.set_exception(e)
        else:
            self.set_result(value)

    def cancel(self):
        return self._inner.cancel()
