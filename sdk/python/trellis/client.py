"""The client: tasks, submit, futures, the session's event stream.

It follows the Go client (client.go): every task carries a key unique in the
session, so a retried Submit is harmless; one thread follows the session's
Watch stream, resuming after the last event it applied, and another
acknowledges applied events so that the manager may forget them.
"""

import base64
import concurrent.futures
import json
import os
import secrets
import shutil
import tarfile
import tempfile
import threading
import time

from . import errors
from ._direct import Direct
from ._wire import Conn, pinned_tls_context, tls_context
from .files import MAX_INLINE, File, Output, Temp, Unpack

_KINDS = {
    "RESULT_KIND_SUCCESS": "success",
    "RESULT_KIND_FAILED": "failed",
    "RESULT_KIND_TIMED_OUT": "timed out",
    "RESULT_KIND_RESOURCE_EXCEEDED": "resource exceeded",
    "RESULT_KIND_INPUT_MISSING": "input missing",
    "RESULT_KIND_WORKER_LOST": "worker lost",
    "RESULT_KIND_CANCELLED": "cancelled",
}

SUBMIT_CHUNK = 1000          # independent tasks per Submit message, as the Go client
MAX_INLINE_PER_MESSAGE = 8 << 20
MAX_ARGS_INLINE = 1 << 20    # larger call arguments travel as a file
ARGS_PATH = ".trellis-args"
ACK_PAUSE = 0.2


# _EFFECTS maps a task's effects (docs/recovery.md) to the wire's names.
_EFFECTS = {"none": "EFFECTS_NONE", "idempotent": "EFFECTS_IDEMPOTENT", "at-most-once": "EFFECTS_AT_MOST_ONCE"}


def _keep(what, keep):
    """_keep reads a task's keep (docs/recovery.md): None (the manager's
    default), "lineage", "replicate N" (2 to 64), "checkpoint sync",
    "checkpoint async" or "checkpoint"; it returns the wire's keep and
    replicas."""
    if keep is None:
        return None, 0
    f = str(keep).split()
    if f == ["lineage"]:
        return "KEEP_LINEAGE", 0
    if f in (["checkpoint"], ["checkpoint", "async"]):
        return "KEEP_CHECKPOINT_ASYNC", 0
    if f == ["checkpoint", "sync"]:
        return "KEEP_CHECKPOINT_SYNC", 0
    if len(f) == 2 and f[0] == "replicate" and f[1].isdigit() and 2 <= int(f[1]) <= 64:
        return "KEEP_REPLICATE", int(f[1])
    raise errors.InvalidError("task %r: keep %r: want lineage, replicate N (2 to 64), checkpoint sync or checkpoint async" % (what, keep))


class Task:
    """Task is a command line (run with /bin/sh -c in a private sandbox) with
    files, resources and retries. time_limit is in seconds."""

    def __init__(self, command, *, name="", cores=1, memory_mb=0, disk_mb=0, gpus=0, env=None,
                 retries=3, retry_on_error=False, time_limit=None, priority=0, category="",
                 tags=(), key="", after=(), unplaceable_timeout=None, effects="none", deterministic=False,
                 workflow="", keep=None):
        self.command = command
        self.name = name
        self.cores, self.memory_mb, self.disk_mb, self.gpus = cores, memory_mb, disk_mb, gpus
        self.env = dict(env or {})
        self.retries = retries
        self.retry_on_error = retry_on_error
        self.time_limit = time_limit
        self.priority = priority
        self.category = category
        self.tags = list(tags)
        self.key = key
        self.after = list(after)
        self.unplaceable_timeout = unplaceable_timeout
        if effects not in _EFFECTS:
            raise errors.InvalidError("task %r: effects %r: want one of %s" % (name or command, effects, ", ".join(sorted(_EFFECTS))))
        self.effects = effects              # docs/recovery.md: "none", "idempotent" or "at-most-once"
        self.deterministic = deterministic  # recorded for the recovery layer
        self.workflow = workflow            # a label: Cluster.cancel_workflow (trellis cancel --workflow) cancels by it
        self.keep = _keep(name or command, keep)  # how temp outputs survive lost workers: (wire keep, replicas)
        self.inputs = []   # (File, path)
        self.outputs = []  # (File, path)
        self.call = None   # (library, function, args bytes) for a call

    def add_input(self, file, path):
        """add_input places file at path in the task's sandbox; returns the task."""
        if not isinstance(file, File):
            raise errors.InvalidError("task %r: input %r: want a trellis file (LocalFile, Buffer, URL, Temp, Unpack, Output), got %r"
                                      % (self.label(), path, file))
        self.inputs.append((file, path))
        return self

    def add_output(self, file, path):
        """add_output brings the file the task leaves at path back as file
        (an Output or a Temp); returns the task."""
        if not isinstance(file, (Output, Temp)):
            raise errors.InvalidError("task %r: output %r must be a trellis.Output or trellis.Temp, got %r" % (self.label(), path, file))
        self.outputs.append((file, path))
        return self

    def label(self):
        if self.name:
            return self.name
        if self.call:
            return self.call[0] + "." + self.call[1]
        return self.command if len(self.command) <= 60 else self.command[:57] + "..."


def Call(library, function, args=None, *, raw=False, **options):
    """Call returns a task calling function of library. args is JSON-encoded
    (bytes go as they are with raw=True); options are Task's (time_limit,
    retries, priority, key, cores ...; cores default to 0 for calls)."""
    options.setdefault("cores", 0)
    t = Task("", **options)
    body = args if raw else json.dumps(args).encode()
    if not isinstance(body, (bytes, bytearray)):
        raise errors.InvalidError("call %s.%s: raw args must be bytes" % (library, function))
    t.call = (library, function, bytes(body))
    t._raw = raw
    return t


class Result:
    """Result is how a task ended: kind ("success", "failed", "timed out",
    "resource exceeded", "input missing", "worker lost", "cancelled"),
    exit_code, message, stdout and stderr tails (bytes), and for a call its
    output (bytes) and traceback."""

    def __init__(self, task_id, name, ev):
        o = ev.get("outcome") or {}
        self.task_id = task_id
        self.name = name
        self.kind = _KINDS.get(o.get("kind"), "failed")
        self.exit_code = int(o.get("exitCode", 0))
        self.message = o.get("message", "")
        self.stdout = _b64(o.get("stdout"))
        self.stderr = _b64(o.get("stderr"))
        self.stdout_truncated = bool(o.get("stdoutTruncated"))
        self.stderr_truncated = bool(o.get("stderrTruncated"))
        self.output = _b64(o.get("result"))
        self.traceback = o.get("traceback", "")
        self.attempts = int(ev.get("attempt", 0))
        self.worker = ev.get("worker", "")
        self.run_time = int(o.get("runMs", 0)) / 1000.0
        self.peak_memory_mb = int(o.get("peakMemoryMb", 0))

    @property
    def ok(self):
        return self.kind == "success"

    def __repr__(self):
        return "Result(task_id=%r, name=%r, kind=%r, exit_code=%r)" % (self.task_id, self.name, self.kind, self.exit_code)


def _b64(s):
    return base64.b64decode(s) if s else b""


_STATES = {"TASK_STATE_WAITING": "waiting", "TASK_STATE_RUNNING": "running", "TASK_STATE_DONE": "done"}


class Event:
    """Event is a change of one task's state, for progress displays: state
    ("waiting", "running", "done"), attempt, worker, note (why it went back
    to waiting, say), unplaceable (why no connected worker could run it)."""

    __slots__ = ("task_id", "name", "state", "attempt", "worker", "note", "unplaceable")

    def __init__(self, name, ev):
        self.task_id = int(ev.get("taskId", 0))
        self.name = name
        self.state = _STATES.get(ev.get("state"), "unknown")
        self.attempt = int(ev.get("attempt", 0))
        self.worker = ev.get("worker", "")
        self.note = ev.get("note", "")
        self.unplaceable = ev.get("unplaceable", "")

    def __repr__(self):
        return "Event(task_id=%r, name=%r, state=%r, worker=%r)" % (self.task_id, self.name, self.state, self.worker)


class TaskFuture(concurrent.futures.Future):
    """TaskFuture is a submitted task's future. result() returns its Result
    (a call's future: the decoded value) or raises TaskError; cancel() asks
    the manager to stop the task."""

    def __init__(self, cluster, task):
        super().__init__()
        self.task = task
        self.task_id = None
        self._cluster = cluster

    def cancel(self):
        # Cancelled here first, so that the manager's answer (a cancelled
        # result) finds the future settled.
        if not super().cancel():
            return False
        if self.task_id is not None:
            self._cluster.cancel(self.task_id)
        return True

    def _settle(self, value=None, exc=None):
        # set_result and set_exception refuse a future cancelled here already.
        try:
            if exc is not None:
                self.set_exception(exc)
            else:
                self.set_result(value)
        except concurrent.futures.InvalidStateError:
            pass


class Cluster:
    """Cluster is a client of one manager; make one with trellis.connect or
    trellis.local. It is safe for use from several threads; use it as a
    context manager, or call close()."""

    def __init__(self, addr, secret, *, manager_timeout=60.0, on_event=None, on_close=None, direct_calls=False, tls_ca=None,
                 tls_fingerprint=None):
        if tls_ca and tls_fingerprint:
            raise errors.InvalidError("connect %s: give tls_ca or tls_fingerprint, not both" % addr)
        tls = tls_context(tls_ca) if tls_ca else None
        if tls_fingerprint:
            tls = pinned_tls_context(addr, tls_fingerprint)
        self.addr = addr
        self._on_event = on_event
        self._emit_lock = threading.Lock()  # on_event runs one call at a time
        self.session = "s-" + secrets.token_hex(12)
        self.manager_timeout = manager_timeout
        self._conn = Conn(addr, secret, tls=tls)
        # Blocking calls straight to the workers, on leases (_direct.py).
        self._direct = Direct(self._conn, self.session) if direct_calls else None
        self._on_close = on_close
        self._lock = threading.Lock()  # guards _futures, _keys, _user_keys, _uploaded, _closed
        self._futures = {}             # by task key, until done
        self._keys = 0
        self._user_keys = set()
        self._uploaded = set()
        self._closed = False
        self._applied = 0              # the watch thread's alone
        self._to_ack = 0
        self._cursor_of = ("", 0)      # (run ID, epoch) that _applied and _to_ack count in
        self._ack = threading.Event()
        self._stop = threading.Event()
        self._stream = None
        self._fetchers = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="trellis-fetch")
        try:
            self.status()  # the manager answers and takes the secret
        except BaseException:
            self._conn.close()
            raise
        ready = threading.Event()
        self._first_error = None
        # exits when close() sets _stop (and closes the stream) or the manager ends the session
        self._watcher = threading.Thread(target=self._watch, args=(ready,), name="trellis-watch", daemon=True)
        # exits when close() sets _stop
        self._acker = threading.Thread(target=self._ack_loop, name="trellis-ack", daemon=True)
        self._watcher.start()
        self._acker.start()
        ready.wait()
        if self._first_error is not None:
            self._halt()
            raise self._first_error

    # --- lifecycle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """close ends the session, so that the manager cancels its unfinished
        tasks, and stops a local cluster this client started."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._futures.values())
            self._futures = {}
        err = None
        try:
            self._conn.unary("EndSession", {"session": self.session})
        except errors.TrellisError as e:
            err = e
        if self._direct is not None:
            self._direct.close()
        self._halt()
        for f, _ in pending:
            f._settle(exc=errors.ClusterClosed("task %r: the client closed before it ended" % f.task.label()))
        if self._on_close is not None:
            self._on_close()
        if err is not None:
            raise err

    def _halt(self):
        self._stop.set()
        self._ack.set()
        s = self._stream
        if s is not None:
            s.close()
        self._watcher.join(10)
        self._acker.join(10)
        self._fetchers.shutdown(wait=True)
        self._conn.close()

    # --- simple calls

    def status(self):
        """status returns the manager's status (a dict, as the wire's StatusResponse)."""
        return self._conn.unary("Status", {})

    def cancel(self, *task_ids):
        """cancel asks the manager to stop tasks (by ID)."""
        self._conn.unary("Cancel", {"taskIds": [str(i) for i in task_ids]})

    def cancel_workflow(self, workflow):
        """cancel_workflow asks the manager to stop every unfinished task
        labelled with workflow (Task(workflow=...)), whichever client submitted
        it, and returns how many; NotFoundError if no task the manager knows
        carries that label."""
        resp = self._conn.unary("Cancel", {"workflow": workflow})
        return int(resp.get("cancelled", 0))

    def fetch(self, file, path):
        """fetch brings a file that tasks made (a Temp, say) to path at the client."""
        self._conn.unary("FetchFile", {"name": file.name})
        self._download(file.name, os.path.abspath(path))

    # --- submit

    def submit(self, *tasks):
        """submit sends tasks (uploading their inputs) and returns one future
        per task, in order. Tasks of one call may run after each other (after=)."""
        if len(tasks) == 1 and isinstance(tasks[0], (list, tuple)):
            tasks = tuple(tasks[0])
        with self._lock:
            if self._closed:
                raise errors.ClusterClosed("submit: the client is closed")
        if len(tasks) <= SUBMIT_CHUNK or any(t.after for t in tasks):
            return self._send(*self._prepare(tasks))
        # A burst of independent tasks goes in chunks, and the next chunk is
        # encoded while the manager takes the one before. If one fails, the
        # chunks accepted before it run; the error carries their futures
        # (accepted).
        futures = []
        sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="trellis-submit")
        inflight = None
        try:
            for i in range(0, len(tasks), SUBMIT_CHUNK):
                prepared = self._prepare(tasks[i:i + SUBMIT_CHUNK])
                if inflight is not None:
                    try:
                        futures += inflight.result()
                    except BaseException:
                        self._untrack(prepared[0])
                        raise
                    finally:
                        inflight = None
                # exits when the chunk is sent and answered; shutdown waits for it
                inflight = sender.submit(self._send, *prepared)
            done, inflight = inflight, None
            futures += done.result()
        except errors.TrellisError as e:
            if inflight is not None:  # a chunk in flight when the next failed to encode
                try:
                    futures += inflight.result()
                except errors.TrellisError:
                    pass
            e.accepted = futures
            raise
        finally:
            sender.shutdown(wait=True)
        return futures

    def _prepare(self, tasks):
        """_prepare encodes tasks into one Submit request (uploading inputs)
        and tracks their futures; _send sends it."""
        index = {id(t): i for i, t in enumerate(tasks)}
        budget = [MAX_INLINE_PER_MESSAGE]
        decls = {}
        specs = []
        for t in tasks:
            spec = self._encode(t, budget, decls)
            for a in t.after:
                if id(a) not in index:
                    raise errors.InvalidError("task %r runs after task %r, which is not in the same submit call" % (t.label(), a.label()))
            if t.after:
                spec["after"] = [index[id(a)] for a in t.after]
            specs.append(spec)
        futures = self._track(specs, tasks)
        req = {"session": self.session, "tasks": specs, "files": [decls[n] for n in sorted(decls)]}
        return specs, futures, req

    def _send(self, specs, futures, req):
        try:
            for attempt in range(3):  # task keys make a retried submit harmless
                try:
                    resp = self._conn.unary("Submit", req)
                    break
                except errors.ManagerUnreachable:
                    if attempt == 2:
                        raise
                    time.sleep(0.2 * (attempt + 1))
            ids = resp.get("taskIds", [])
            if len(ids) != len(futures):
                raise errors.TrellisError("submit: the manager returned %d task IDs for %d tasks" % (len(ids), len(futures)))
        except BaseException:
            self._untrack(specs)
            raise
        for f, i in zip(futures, ids):
            f.task_id = int(i)
        return futures

    def _track(self, specs, tasks):
        futures = []
        with self._lock:
            for i, (spec, t) in enumerate(zip(specs, tasks)):
                if not spec.get("key"):
                    self._keys += 1
                    spec["key"] = "~%d" % self._keys  # "~": apart from keys users choose
                elif spec["key"] in self._user_keys:
                    for s in specs[:i]:
                        self._untrack_locked(s)
                    raise errors.InvalidError("task %r: key %r was given to another task of this client; keys are unique in a session"
                                              % (t.label(), spec["key"]))
                else:
                    self._user_keys.add(spec["key"])
                f = TaskFuture(self, t)
                self._futures[spec["key"]] = (f, t)
                futures.append(f)
        return futures

    def _untrack(self, specs):
        with self._lock:
            for s in specs:
                self._untrack_locked(s)

    def _untrack_locked(self, spec):
        self._futures.pop(spec["key"], None)
        self._user_keys.discard(spec["key"])

    def _encode(self, t, budget, decls):
        name = t.label()
        if t.key.startswith("~"):
            raise errors.InvalidError("task %r: key %r: keys starting with ~ are the client's own" % (name, t.key))
        # Fields at their zero value are left out, as protobuf leaves them out:
        # a burst of calls encodes, travels and decodes in less time. Plain
        # ifs, not a loop over pairs: this runs once per task of a burst.
        spec = {"name": name, "key": t.key}
        if t.workflow:
            spec["workflow"] = t.workflow
        res = {}
        if t.cores:
            res["cores"] = t.cores
        if t.memory_mb:
            res["memoryMb"] = t.memory_mb
        if t.disk_mb:
            res["diskMb"] = t.disk_mb
        if t.gpus:
            res["gpus"] = t.gpus
        if res:
            spec["resources"] = res
        if t.command:
            spec["command"] = t.command
        if t.retries:
            spec["retries"] = t.retries
        if t.retry_on_error:
            spec["retryOnError"] = True
        if t.time_limit:
            spec["timeLimitMs"] = int(t.time_limit * 1000)
        if t.priority:
            spec["priority"] = t.priority
        if t.category:
            spec["category"] = t.category
        if t.tags:
            spec["tags"] = t.tags
        if t.env:
            spec["env"] = ["%s=%s" % kv for kv in t.env.items()]
        if t.effects != "none":
            spec["effects"] = _EFFECTS[t.effects]
        if t.deterministic:
            spec["deterministic"] = True
        if t.keep[0]:
            spec["keep"] = t.keep[0]
            if t.keep[1]:
                spec["replicas"] = t.keep[1]
        if t.unplaceable_timeout is not None:
            spec["unplaceableTimeoutMs"] = -1 if t.unplaceable_timeout < 0 else int(-(-t.unplaceable_timeout * 1000 // 1))
        inputs = list(t.inputs)
        if t.call is not None:
            lib, fn, args = t.call
            spec["call"] = {"library": lib, "function": fn}
            if len(args) > MAX_ARGS_INLINE:  # too big for the messages: a file
                from .files import Buffer
                spec["call"]["argsPath"] = ARGS_PATH
                inputs.append((Buffer(args), ARGS_PATH))
            else:
                spec["call"]["args"] = base64.b64encode(args).decode()
        if inputs:
            spec["inputs"] = [self._input_ref(f, path, decls, budget) for f, path in inputs]
        if t.outputs:
            spec["outputs"] = []
            for f, path in t.outputs:
                self._declare(f, decls)
                spec["outputs"].append({"name": f.name, "path": path})
        return spec

    def _input_ref(self, f, path, decls, budget=None):
        """_input_ref returns an input's wire form: small uploads travel inline
        while budget (a one-item list) lasts; the others are declared."""
        if budget is None:
            budget = [MAX_INLINE_PER_MESSAGE]
        ref = {"name": f.name, "path": path, "size": -1}
        size = f.size() if f.kind == "FILE_KIND_MANAGER" and f.level is None else None
        if size is not None and size <= min(MAX_INLINE, budget[0]):
            data = f.content()
            budget[0] -= len(data)
            ref["content"], ref["size"] = base64.b64encode(data).decode(), len(data)
        else:
            self._declare(f, decls)
        return ref

    def _declare(self, f, decls):
        """_declare adds f's declaration (and its archive's) to decls,
        uploading what must be at the manager."""
        if f.name in decls:
            return
        d = {"name": f.name, "kind": f.kind}
        if f.level:
            d["level"] = f.level
        if f.replicas:
            d["replicas"] = f.replicas
        if f.depth:
            d["pruneDepth"] = f.depth
        if f.kind == "FILE_KIND_MANAGER":
            self._upload(f)
        elif f.kind == "FILE_KIND_URL":
            d["url"] = f.url
        elif isinstance(f, Unpack):
            self._declare(f.archive, decls)
            d.update(unpackFrom=f.archive.name, unpackFormat=f.format, dir=True)
        decls[f.name] = d

    def _upload(self, f):
        name = f.name
        with self._lock:
            if name in self._uploaded:
                return
        resp = self._conn.file("HEAD", name)
        resp.read()
        resp.conn_to_close.close()
        if resp.status != 200:
            try:
                body, size = f.open()
            except (OSError, ValueError) as e:
                raise errors.InvalidError("upload %r: %s" % (getattr(f, "path", name), e)) from None
            with body:
                resp = self._conn.file("PUT", name, body, size)
                body = resp.read()
                resp.conn_to_close.close()
            if resp.status // 100 != 2:
                raise errors.TrellisError("upload %r: HTTP %d: %s" % (getattr(f, "path", name), resp.status, body[:300].decode("utf-8", "replace")))
        with self._lock:
            self._uploaded.add(name)

    # --- events

    def _watch(self, ready):
        first = True
        run = None
        lost_at = None
        while not self._stop.is_set():
            err = None
            stream = None
            try:
                run_id, epoch = self._cursor_of
                stream = self._conn.stream("Watch", {"session": self.session, "after": str(self._applied),
                                                     "manager": run_id, "epoch": str(epoch)})
                self._stream = stream
                if self._stop.is_set():  # close() came before the stream was in place
                    break
                if first:
                    first = False
                    ready.set()
                restarted = False
                for msg in stream.messages():
                    if msg.get("manager"):
                        restarted = run is not None and msg["manager"] != run
                        run, lost_at = msg["manager"], None
                        if not restarted:
                            cursor = (run, int(msg.get("epoch", 0)))
                            if self._cursor_of[0] == run and self._cursor_of[1] not in (0, cursor[1]):
                                # Recovered from its journal in a new epoch,
                                # which numbers the session's events anew.
                                self._applied = 0
                                self._to_ack = 0
                            self._cursor_of = cursor
                        if restarted:
                            # This stream skips the new run's events up to
                            # the old cursor: open another from the start.
                            self._manager_restarted()
                            break
                    for ev in msg.get("events", ()):
                        self._apply(ev)
                err = None if restarted else errors.ManagerUnreachable("Watch: the stream ended")
            except errors.TrellisError as e:
                err = e
            finally:
                if stream is not None:
                    stream.close()
                self._stream = None
            if self._stop.is_set():
                break
            if err is None:
                continue
            if first:
                self._first_error = err
                ready.set()
                return
            if isinstance(err, errors.SessionEnded):
                self._fail_waiting(err)
                return
            if isinstance(err, errors.AuthError):
                self._fail_waiting(err)
                return
            if lost_at is None:
                lost_at = time.monotonic()
            elif time.monotonic() - lost_at >= self.manager_timeout:
                self._fail_waiting(errors.ManagerLost("manager %s unreachable for %.0f s: %s" % (self.addr, time.monotonic() - lost_at, err)))
            self._stop.wait(0.5)

    def _manager_restarted(self):
        self._fail_waiting(errors.ManagerLost("manager %s restarted and forgot this session's tasks" % self.addr))
        self._applied = 0
        self._to_ack = 0

    def _fail_waiting(self, exc):
        with self._lock:
            pending = list(self._futures.values())
            self._futures = {}
        for f, _ in pending:
            f._settle(exc=exc)

    def _apply(self, ev):
        seq = int(ev.get("seq", 0))
        if seq <= self._applied:
            return  # applied already, sent again on a resumed stream
        self._applied = seq
        self._deliver(ev)
        # An unplaceable reason told to many tasks at once: each gets it.
        for task_id, key in zip(ev.get("alsoTaskIds", ()), ev.get("alsoKeys", ())):
            self._deliver(dict(ev, taskId=task_id, key=key))
        self._to_ack = seq
        self._ack.set()

    def _ack_loop(self):
        while not self._stop.is_set():
            self._ack.wait()
            if self._stop.is_set():
                return
            self._ack.clear()
            try:
                run_id, epoch = self._cursor_of
                self._conn.unary("Ack", {"session": self.session, "seq": str(self._to_ack), "manager": run_id, "epoch": str(epoch)})
            except errors.TrellisError:
                pass  # the next ack, or a resumed Watch, says it again
            self._stop.wait(ACK_PAUSE)

    def _deliver(self, ev):
        if ev.get("state") != "TASK_STATE_DONE":
            if self._on_event is not None:
                with self._lock:
                    entry = self._futures.get(ev.get("key", ""))
                if entry is not None:
                    self._emit(Event(entry[1].label(), ev))
            return
        with self._lock:
            entry = self._futures.pop(ev.get("key", ""), None)
        if entry is None:
            return
        f, t = entry
        o = ev.get("outcome")
        if t.call is not None and not t.outputs and self._on_event is None and o and o.get("kind") == "RESULT_KIND_SUCCESS" \
                and "resultFile" not in o:
            # A call that returned its value inline: the value is all that
            # is needed, and bursts of them come here one after another.
            out = o.get("result")
            out = base64.b64decode(out) if out else b""
            if getattr(t, "_raw", False):
                f._settle(out)
                return
            try:
                f._settle(json.loads(out) if out else None)
                return
            except ValueError:
                pass  # the general path below says why
        r = Result(int(ev.get("taskId", 0)), t.label(), ev)
        if r.ok and (any(getattr(o, "path", None) for o, _ in t.outputs) or (ev.get("outcome") or {}).get("resultFile")):
            # exits when the downloads end; close() waits for it
            self._fetchers.submit(self._complete, f, t, r, ev)
        else:
            self._complete(f, t, r, ev)

    def _complete(self, f, t, r, ev):
        o = ev.get("outcome") or {}
        try:
            if r.ok and o.get("resultFile"):
                rf = o["resultFile"]
                resp = self._conn.file("GET", rf["name"])
                r.output = resp.read()
                resp.conn_to_close.close()
                if resp.status != 200 or len(r.output) != int(rf.get("size", 0)):
                    raise errors.TrellisError("fetch the result of %s: HTTP %d, %d bytes of %s" % (r.name, resp.status, len(r.output), rf.get("size")))
            if r.ok:
                inline = {i["name"]: _b64(i.get("content")) for i in o.get("outputs", ()) if "content" in i}
                for out, _ in t.outputs:
                    if getattr(out, "path", None):
                        if out.name in inline:
                            _write_local(out.path, inline[out.name])
                        else:
                            self._download(out.name, out.path)
        except (errors.TrellisError, OSError) as e:
            r.kind, r.message = "failed", str(e)
        if self._on_event is not None:
            self._emit(Event(t.label(), ev))
        if t.call is not None:
            try:
                f._settle(_call_value(r, getattr(t, "_raw", False)))
            except errors.CallError as e:
                f._settle(exc=e)
        elif r.ok:
            f._settle(r)
        else:
            f._settle(exc=errors.TaskError(r))

    def _emit(self, event):
        """_emit calls on_event; an exception there is printed, never raised
        into the client's threads."""
        try:
            with self._emit_lock:
                self._on_event(event)
        except Exception:
            import traceback
            traceback.print_exc()

    def _download(self, name, path):
        resp = self._conn.file("GET", name)
        try:
            if resp.status != 200:
                raise errors.TrellisError("fetch %s to %s: HTTP %d: %s" % (name, path, resp.status, resp.read(300).decode("utf-8", "replace")))
            if resp.getheader("X-Trellis-Dir") == "1":
                _write_local_dir(path, resp)
            else:
                _write_local(path, resp)
        finally:
            resp.conn_to_close.close()

    # --- calls and libraries

    def install(self, library):
        """install installs (or replaces) a library on the cluster."""
        library._install(self)

    def call(self, library, function, args=None, *, raw=False, timeout=None, **options):
        """call runs function of library with args (JSON) and returns its
        result; it raises CallError if the call failed. timeout: seconds to
        wait here (the call is then cancelled); time_limit: on the worker.
        With direct_calls (connect, local), a call with no option but
        time_limit goes straight to a worker that hosts a ready instance,
        where the manager lends one (docs/direct-calls.md); else, and where
        that fails on the way, through the manager."""
        if self._direct is not None and set(options) <= {"time_limit"}:
            name = getattr(library, "name", library)
            body = args if raw else json.dumps(args).encode()
            if not isinstance(body, (bytes, bytearray)):
                raise errors.InvalidError("call %s.%s: raw args must be bytes" % (name, function))
            key = self._direct.key()
            limit = options.get("time_limit")
            o = self._direct.call(name, function, bytes(body), key, int(limit * 1000) if limit else 0, timeout)
            if o is not None:
                return _call_value(Result(0, "%s.%s" % (name, function), {"outcome": o}), raw)
            options["key"] = key  # through the manager, under the same key
        f = self.call_async(library, function, args, raw=raw, **options)
        try:
            return f.result(timeout)
        except concurrent.futures.TimeoutError:
            f.cancel()
            raise

    def dask_get(self, dsk, keys, **kwargs):
        """dask_get is a Dask scheduler running on this cluster:
        dask.compute(x, scheduler=cluster.dask_get). See trellis.dask.get."""
        from . import dask as tdask
        return tdask.get(dsk, keys, cluster=self, **kwargs)

    def direct_stats(self):
        """direct_stats returns (sent, fell_back): the calls this client sent
        straight to a worker, and how many of those went through the
        manager after all."""
        if self._direct is None:
            return 0, 0
        return self._direct.sent, self._direct.fell_back

    def call_async(self, library, function, args=None, *, raw=False, **options):
        """call_async submits one call and returns its future."""
        name = getattr(library, "name", library)
        return self.submit(Call(name, function, args, raw=raw, **options))[0]


def _call_value(r, raw):
    """_call_value is a call's value (its Result r, direct or through the
    manager): its result, decoded from JSON unless raw; CallError if it
    failed."""
    if not r.ok:
        raise errors.CallError(r)
    if raw:
        return r.output
    try:
        return json.loads(r.output) if r.output else None
    except ValueError as e:
        r.kind, r.message = "failed", "the call's result is not JSON: %s" % e
        raise errors.CallError(r) from None


def _write_local(path, src):
    """_write_local writes bytes (or a readable) to path through a temporary
    file, so that path never holds a partial file."""
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".trellis-")
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(src, (bytes, bytearray)):
                out.write(src)
            else:
                shutil.copyfileobj(src, out, 1 << 20)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def _write_local_dir(path, src):
    """_write_local_dir unpacks a directory's tar stream at path, replacing
    what was there only once the whole tree is written."""
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=d, prefix=".trellis-")
    try:
        tree = os.path.join(tmp, "d")
        with tarfile.open(fileobj=src, mode="r|") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tree, filter="data")
            else:
                tar.extractall(tree)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tree, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
