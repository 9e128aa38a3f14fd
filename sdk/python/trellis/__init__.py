"""trellis: the Python client of a trellis cluster.

    import trellis
    with trellis.local(workers=2) as cluster:      # or trellis.connect("HOST:PORT", secret_file=...)
        t = trellis.Task("wc -l < in.txt > n.txt")
        t.add_input(trellis.LocalFile("data.txt"), "in.txt")
        t.add_output(trellis.Output("n.txt"), "n.txt")
        result = cluster.submit(t)[0].result()

Standard library only. See docs/python.md.
"""

from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED, as_completed, wait

from .client import Call, Cluster, Event, Result, Task, TaskFuture
from .errors import (AuthError, CallError, ClusterClosed, InvalidError, ManagerLost, ManagerUnreachable, NotFoundError,
                     SessionEnded, TaskError, TrellisError)
from .files import (CACHE_FOREVER, CACHE_TASK, CACHE_WORKER, CACHE_WORKFLOW, URL, Buffer, File, LocalFile, Output,
                    Temp, Unpack)
from .executor import Executor
from .library import Library
from . import dask  # noqa: E402  (trellis.dask.get; imports dask only when called)
from .local import local

__all__ = [
    "AuthError", "Buffer", "CACHE_FOREVER", "CACHE_TASK", "CACHE_WORKER", "CACHE_WORKFLOW", "Call", "CallError", "Cluster",
    "ClusterClosed", "Event", "File", "InvalidError", "Library", "LocalFile", "ManagerLost", "ManagerUnreachable", "NotFoundError",
    "Output", "Result", "SessionEnded", "Task", "TaskError", "TaskFuture", "Temp", "TrellisError", "URL", "Unpack",
    "Executor", "connect", "local", "wait", "as_completed", "FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED",
]


def connect(addr, secret_file=None, *, secret=None, manager_timeout=60.0, on_event=None, direct_calls=False, tls_ca=None,
            tls_fingerprint=None):
    """connect returns a Cluster for the manager at addr (HOST:PORT), with the
    secret read from secret_file (or given as secret). on_event(Event) is
    called for every state change of its tasks, in the client's event
    thread (a task's last event once its outputs are at the client). With
    direct_calls, blocking calls (Cluster.call) go straight to the workers
    on leases the manager lends (docs/direct-calls.md). tls_ca: the cluster
    CA's PEM file (the manager's trellis-tls/ca.pem) for a manager with TLS,
    as the Go clients' --tls-ca; or tls_fingerprint: the CA's SHA-256
    fingerprint the manager printed ("sha256:…"), as --tls-fingerprint
    (docs/tls.md)."""
    if secret is None:
        if secret_file is None:
            raise InvalidError("connect %s: give secret_file= (the manager's --secret-file) or secret=" % addr)
        try:
            with open(secret_file) as f:
                secret = f.read().strip()
        except OSError as e:
            raise InvalidError("connect %s: read the secret file: %s" % (addr, e)) from None
        if not secret:
            raise InvalidError("connect %s: secret file %s is empty" % (addr, secret_file))
    return Cluster(addr, secret, manager_timeout=manager_timeout, on_event=on_event, direct_calls=direct_calls, tls_ca=tls_ca,
                   tls_fingerprint=tls_fingerprint)
