"""Direct calls: a blocking call sent straight to the worker that hosts a
ready instance of its library, on a lease the manager lent this client
(docs/direct-calls.md), instead of through the manager.

The manager lends a lease on a library's ready instance (Manager.Lease):
its worker's address, a token, and slots. A call on it is a Connect
unary Worker.Call in JSON over HTTP/1.1 to the worker's file-server port,
one kept-alive connection per thread and worker. The worker runs it in the
instance and reports its end to the manager, which renews the lease. A
call the lease cannot take (no lease lent, its slots all busy, the worker
refused it, the connection broke, its result too large for an answer)
goes through the manager as any call, under the same key, so that a
library that applies its idempotency key applies it once.
"""

import base64
import concurrent.futures
import http.client
import itertools
import json
import threading
import time

from . import errors
from ._wire import Pool

# LEASE_SLOTS is how many slots the client asks for on one lease (the Go
# client's leaseSlots).
LEASE_SLOTS = 64

# _NO_TIMEOUT is a direct call's wait for its answer where the caller gives
# none: a call may run for long.
_NO_TIMEOUT = 7 * 24 * 3600.0

# LEASE_BACKOFF is how long the client waits, in seconds, before it asks
# again for a lease on a library after the manager lent none or a lease
# failed.
LEASE_BACKOFF = 0.5


class _Lease:
    """_Lease is one lease: where its worker is, its token and slots."""

    def __init__(self, resp):
        self.id = int(resp["lease"])
        self.addr = resp["workerAddr"]
        self.token = resp["token"]
        self.slots = max(int(resp.get("slots", 1)), 1)
        self.busy = 0


class Direct:
    """Direct holds a client's leases and sends its blocking calls on them.
    It is safe for use from several threads."""

    def __init__(self, conn, session):
        self._conn = conn            # the manager's
        self._session = session
        self._lock = threading.Lock()  # guards everything below
        self._leases = {}            # by library
        self._asking = set()         # libraries whose lease is being asked for
        self._retry = {}             # by library: no lease asked for until then (time.monotonic)
        self._keys = itertools.count(1)
        self._pool = Pool(conn.tls, 60.0)  # to the workers
        self._closed = False
        self.sent = 0                # calls sent straight to a worker
        self.fell_back = 0           # of those, calls that went through the manager after all

    def key(self):
        """key returns a new key for a direct call (its manager-path fallback
        uses it too)."""
        return "direct-%d" % next(self._keys)

    def call(self, library, function, body, key, time_limit_ms, timeout):
        """call sends one call on a lease of library and returns its outcome
        (the wire's Outcome, a dict), or None when it is to go through the
        manager under the same key (see the module's doc)."""
        lease = self._take(library)
        if lease is None:
            return None
        with self._lock:
            self.sent += 1
        req = {"lease": str(lease.id), "token": lease.token, "key": key, "function": function,
               "args": base64.b64encode(body).decode(), "idempotencyKey": self._session + "/" + key}
        if time_limit_ms:
            req["timeLimitMs"] = str(time_limit_ms)
        try:
            status, data = self._roundtrip(lease.addr, req, timeout)
        except TimeoutError:
            # The caller's timeout: the worker finishes the call and reports
            # it; the lease stays.
            self._give(library, lease, failed=False)
            raise concurrent.futures.TimeoutError("call %s.%s: no answer within %s s" % (library, function, timeout)) from None
        except (OSError, http.client.HTTPException, ValueError):
            self._give(library, lease, failed=True)
            return self._fall_back()
        if status != 200:
            err = _error_code(data)
            # A full queue at the worker: the lease stays; anything else
            # (the lease ended, a wrong token, the instance gone) ends it.
            self._give(library, lease, failed=err != "resource_exhausted")
            return self._fall_back()
        try:
            resp = json.loads(data or b"{}")
        except ValueError:
            self._give(library, lease, failed=True)
            return self._fall_back()
        self._give(library, lease, failed=False)
        if int(resp.get("resultTooLarge", 0)) > 0:
            return self._fall_back()  # it ran; its result comes through the manager's path
        return resp.get("outcome") or {}

    def leases(self, library):
        """leases says how many leases the client holds on library (0 or 1)."""
        with self._lock:
            return int(library in self._leases)

    def close(self):
        """close closes the connections; no lease is taken after it (the
        session's end ends the leases)."""
        with self._lock:
            self._closed = True
            self._leases = {}
        self._pool.close()

    def _fall_back(self):
        with self._lock:
            self.fell_back += 1
        return None

    def _take(self, library):
        """_take returns a lease of library with a slot taken, asking the
        manager for one where the client has none; None if there is none
        to take now."""
        with self._lock:
            if self._closed:
                return None
            lease = self._leases.get(library)
            if lease is not None:
                if lease.busy >= lease.slots:
                    return None
                lease.busy += 1
                return lease
            if library in self._asking or time.monotonic() < self._retry.get(library, 0):
                return None
            self._asking.add(library)
        try:
            resp = self._conn.unary("Lease", {"session": self._session, "library": library, "slots": LEASE_SLOTS})
        except errors.TrellisError:
            resp = {}
        with self._lock:
            self._asking.discard(library)
            if not resp.get("lease") or not resp.get("workerAddr"):
                self._retry[library] = time.monotonic() + LEASE_BACKOFF
                return None
            lease = _Lease(resp)
            if self._closed:
                lease = None  # the session's end ends it
            else:
                lease.busy = 1
                self._leases[library] = lease
        return lease

    def _give(self, library, lease, failed):
        """_give frees the slot a call took; a failed lease is dropped and
        given back to the manager, and none is asked for a while."""
        with self._lock:
            lease.busy -= 1
            if not failed or self._leases.get(library) is not lease:
                return
            del self._leases[library]
            self._retry[library] = time.monotonic() + LEASE_BACKOFF
        self._release(library, lease)

    def _release(self, library, lease):
        try:
            self._conn.unary("Lease", {"session": self._session, "library": library, "release": str(lease.id)})
        except errors.TrellisError:
            pass  # the manager ends it when its time to live passes

    def _roundtrip(self, addr, req, timeout):
        """_roundtrip posts req as Worker.Call to the worker at addr (over
        TLS in a cluster with TLS: its file server speaks TLS only) and
        returns (status, body). A kept-alive connection that fails is tried
        once more on a fresh one, under the same key, as a fall-back through
        the manager would be."""
        body = json.dumps(req, separators=(",", ":")).encode()
        head = ("POST /trellis.v1.Worker/Call HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\n\r\n" % (addr, len(body))).encode()
        return self._pool.roundtrip(addr, head, body, timeout if timeout is not None else _NO_TIMEOUT)


def _error_code(data):
    """_error_code is the code of a Connect error body ("" if none)."""
    try:
        return json.loads(data or b"{}").get("code", "")
    except ValueError:
        return ""
