"""trellis_library writes trellis libraries in Python (library protocol version 1).

A library is a long-running process that a trellis worker starts once and then sends many
function calls (see docs/library-protocol.md). This module is the whole SDK: one file,
standard library only; copy it next to your script or put its directory on PYTHONPATH.

    import trellis_library as tl

    lib = tl.Library("mathlib")

    @lib.setup                    # optional: runs once, before the handshake
    def load():
        return {"scale": 2}       # passed as `state` to the functions that take it

    @lib.function                 # served as "add"; @lib.function("name") renames it
    def add(args, state=None):    # args: the call's JSON arguments, decoded
        return args[0] + args[1]  # the result, JSON-encoded

    @lib.function(raw=True)       # raw: the body as bytes in, bytes (or str) out
    def echo(body):
        return body

    if __name__ == "__main__":
        lib.serve()               # never returns

Calls run in a pool of TRELLIS_LIBRARY_SLOTS threads (mode `direct`), or each in a forked
child (mode `fork`): a child cannot leak state into later calls, a cancel or an expired
time limit kills it, and a crash in it fails only that call.

Once serve() starts, the protocol owns the process's real stdin and stdout: file
descriptors 1 and 0 are pointed at stderr and /dev/null, so print() (and any subprocess)
writes to stderr and cannot corrupt the frames.
"""

import inspect
import json
import os
import queue
import re
import select
import signal
import struct
import sys
import threading
import time
import traceback

try:
    import fcntl
except ImportError:  # not Unix: direct mode only
    fcntl = None

__all__ = [
    "Library",
    "log",
    "cancelled",
    "current_call_id",
    "call_dir",
    "idempotency_key",
    "PROTOCOL_VERSION",
    "MAX_HEADER",
    "MAX_BODY",
]

PROTOCOL_VERSION = 1
MAX_HEADER = 64 * 1024  # the largest frame header, in bytes
MAX_BODY = 64 * 1024 * 1024  # the largest frame body, in bytes
MAX_HANDSHAKE = 64 * 1024  # the longest handshake line, newline included

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+\Z")
_PREFIX = struct.Struct(">II")
_SMALL_WRITE = 64 * 1024  # frames up to this size go out in one write
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux: larger pipes for fork-mode results
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode

# Exit statuses of serve().
EXIT_OK = 0  # end of stdin
EXIT_SETUP_FAILED = 1  # the set-up step raised; its traceback is on stderr
EXIT_PROTOCOL = 2  # malformed input from the worker, bad configuration, or lost stdout

_PENDING, _RUNNING, _DONE = 0, 1, 2

_local = threading.local()  # .call: the _Call this thread is running
_server = None  # the running _Server, once serve() has sent the handshake


def log(msg):
    """log sends msg to the worker as a log frame (to stderr before serve() starts)."""
    msg = _truncate(str(msg), MAX_HEADER // 2)
    srv = _server
    if srv is None:
        sys.stderr.write("%s\n" % msg)
        sys.stderr.flush()
        return
    srv.log(msg)


def cancelled():
    """cancelled reports whether the current call has been cancelled or run out of time.

    In direct mode a running call cannot be stopped from outside; a long function can poll
    cancelled() and return early (its result is then replaced by "cancelled"). In fork
    mode the child is killed instead, so this only turns true at the time limit. Outside
    a call it is False.
    """
    call = getattr(_local, "call", None)
    if call is None:
        return False
    if call.cancelled:
        return True
    return call.deadline is not None and time.monotonic() >= call.deadline


def call_dir():
    """call_dir returns the absolute path of the current call's own directory: its input
    files are there, at the paths the caller gave, and the output files it declared must be
    written there. It is None outside a call and for a call without files."""
    call = getattr(_local, "call", None)
    return None if call is None else call.dir


def idempotency_key():
    """idempotency_key returns the current call's idempotency key, "SESSION/KEY": the same
    for every attempt of the call (a retry after a crash, a manager's restart with --state),
    so that a function with an external effect can apply it once per key. It is None
    outside a call, or from a worker that gives none."""
    call = getattr(_local, "call", None)
    return None if call is None else call.key


def current_call_id():
    """current_call_id returns the id of the call this thread runs, or None."""
    call = getattr(_local, "call", None)
    return None if call is None else call.id


class _Function:
    __slots__ = ("name", "fn", "raw", "invoke")

    def __init__(self, name, fn, raw):
        self.name = name
        self.fn = fn
        self.raw = raw
        style = _state_style(fn)
        if style == "kw":
            self.invoke = lambda args, state: fn(args, state=state)
        elif style == "pos":
            self.invoke = lambda args, state: fn(args, state)
        elif style == "args":
            self.invoke = lambda args, state: fn(args)
        else:
            self.invoke = lambda args, state: fn()


def _state_style(fn):
    """_state_style says how fn takes its arguments: (args, state=), (args, state), (args) or ()."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return "args"
    p = params.get("state")
    if p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
        return "kw"
    kinds = [p.kind for p in params.values()]
    positional = sum(k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD) for k in kinds)
    if inspect.Parameter.VAR_POSITIONAL in kinds or positional >= 2:
        return "pos"
    if positional == 1:
        return "args"
    return "none"


class Library:
    """Library is a named set of functions with an optional set-up step.

    stop_grace is how long serve() waits for running calls after the end of stdin (the
    worker kills the process group 5 s after closing stdin).
    """

    def __init__(self, name, stop_grace=2.0):
        name = str(name)
        if not name or any(c in name for c in "|\r\n"):
            raise ValueError("library name %r: must be non-empty, without '|' or newlines" % name)
        self.name = name
        self.stop_grace = stop_grace
        self._functions = {}
        self._setup = None

    def setup(self, fn):
        """setup registers fn as the set-up step: called once, with no arguments, before the
        handshake; its return value is the `state` of the functions that take one. If it
        raises, serve() prints the traceback to stderr and exits with status 1."""
        if self._setup is not None:
            raise ValueError("library %s: set-up step registered twice" % self.name)
        self._setup = fn
        return fn

    def function(self, fn=None, *, name=None, raw=False):
        """function registers a function; as a decorator: @lib.function, @lib.function("name"),
        @lib.function(raw=True), @lib.function("name", raw=True).

        The function is called as f(args, state=state) if it has a `state` parameter,
        f(args, state) if it takes two positional parameters, f(args) with one, f() with
        none. args is the call body decoded as JSON (None for an empty body), or the body
        as bytes when raw. The return value is JSON-encoded (NaN and infinities are errors);
        a raw function returns bytes-like, str (sent as UTF-8) or None (empty).
        """
        if isinstance(fn, str):
            if name is not None:
                raise TypeError("function(): name given twice")
            name, fn = fn, None

        def register(f):
            n = f.__name__ if name is None else name
            if not isinstance(n, str) or not _NAME_RE.match(n):
                raise ValueError("function name %r: must match [A-Za-z0-9_.-]+" % (n,))
            if n in self._functions:
                raise ValueError("library %s: function %s registered twice" % (self.name, n))
            self._functions[n] = _Function(n, f, bool(raw))
            return f

        if fn is None:
            return register
        return register(fn)

    @property
    def functions(self):
        """functions lists the registered function names, in registration order."""
        return list(self._functions)

    def handshake_line(self):
        """handshake_line returns the line serve() announces itself with, newline included."""
        return "TRELLIS-LIBRARY|%d|%s|%s\n" % (PROTOCOL_VERSION, self.name, ",".join(self._functions))

    def serve(self, slots=None, mode=None):
        """serve runs the library until the end of stdin, then exits the process; it never
        returns. slots and mode default to TRELLIS_LIBRARY_SLOTS (1 when unset) and
        TRELLIS_LIBRARY_MODE (direct when unset).

        Exit statuses: 0 after the end of stdin, 1 when the set-up step raised, 2 on a
        protocol error or a bad configuration (the reason is on stderr).
        """
        try:
            slots, mode = self._config(slots, mode)
        except ValueError as e:
            _die("trellis_library: %s" % e, EXIT_PROTOCOL)
        _restore_godebug()
        line = self.handshake_line().encode("utf-8")
        if len(line) > MAX_HANDSHAKE:
            _die("trellis_library: handshake line is %d bytes, over %d" % (len(line), MAX_HANDSHAKE), EXIT_PROTOCOL)
        try:
            out_fd, in_fd = _take_stdio()
        except OSError as e:
            _die("trellis_library: stdin/stdout: %s" % e, EXIT_PROTOCOL)
        state = None
        if self._setup is not None:
            try:
                state = self._setup()
            except BaseException:
                sys.stderr.write("trellis_library: set-up of library %s failed:\n" % self.name)
                traceback.print_exc()
                _die(None, EXIT_SETUP_FAILED)
        srv = _Server(self, state, slots, mode, out_fd, in_fd)
        code = srv.run(line)
        _die(None, code)

    def _config(self, slots, mode):
        proto = os.environ.get("TRELLIS_LIBRARY_PROTOCOL")
        if proto not in (None, "", str(PROTOCOL_VERSION)):
            raise ValueError("worker speaks protocol %r, this SDK speaks %d" % (proto, PROTOCOL_VERSION))
        if not self._functions:
            raise ValueError("library %s has no functions" % self.name)
        if slots is None:
            raw = os.environ.get("TRELLIS_LIBRARY_SLOTS", "").strip() or "1"
            try:
                slots = int(raw)
            except ValueError:
                raise ValueError("TRELLIS_LIBRARY_SLOTS=%r: not an integer" % raw) from None
        if not isinstance(slots, int) or not 1 <= slots <= 4096:
            raise ValueError("slots %r: want 1 to 4096" % (slots,))
        if mode is None:
            mode = os.environ.get("TRELLIS_LIBRARY_MODE", "").strip() or "direct"
        if mode not in ("direct", "fork"):
            raise ValueError("mode %r: want direct or fork" % (mode,))
        if mode == "fork" and not hasattr(os, "fork"):
            sys.stderr.write("trellis_library: no fork on this platform; running in direct mode\n")
            mode = "direct"
        return slots, mode


def _restore_godebug():
    """_restore_godebug puts GODEBUG back as the library was given it, where the worker
    added the Go runtime monitor's setting to it (for Go libraries; saved in
    TRELLIS_SYSMON_GODEBUG as "" for none, or "=" and the value): Go programs that
    the library starts see it unchanged."""
    saved = os.environ.pop("TRELLIS_SYSMON_GODEBUG", None)
    if saved is None:
        return
    if saved.startswith("="):
        os.environ["GODEBUG"] = saved[1:]
    else:
        os.environ.pop("GODEBUG", None)


def _die(msg, code):
    if msg:
        try:
            sys.stderr.write(msg + "\n")
        except Exception:
            pass
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            pass
    os._exit(code)


def _take_stdio():
    """_take_stdio moves the protocol's stdin and stdout to private descriptors (not
    inherited by subprocesses) and points fds 0 and 1 at /dev/null and stderr."""
    try:
        sys.stdout.flush()
    except Exception:
        pass
    out_fd = os.dup(1)
    in_fd = os.dup(0)
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = sys.stderr
    return out_fd, in_fd


def _write_all(fd, data):
    n = os.write(fd, data)
    if n == len(data):
        return
    mv = memoryview(data)[n:]
    while mv:
        n = os.write(fd, mv)
        mv = mv[n:]


def _writev_all(fd, bufs):
    """_writev_all writes bufs to fd in order, with as few system calls as it can."""
    if len(bufs) == 1 or not hasattr(os, "writev"):
        for b in bufs:
            _write_all(fd, b)
        return
    i = 0
    while i < len(bufs):
        chunk = bufs[i : i + 512]  # under IOV_MAX (1024 on Linux)
        n = os.writev(fd, chunk)
        for b in chunk:
            if n >= len(b):
                n -= len(b)
                i += 1
                continue
            _write_all(fd, memoryview(b)[n:])  # a short write: finish this buffer
            i += 1
            break


def _truncate(s, limit):
    if len(s) <= limit:
        return s
    head = limit // 4
    tail = limit - head
    return "%s\n... (%d characters left out) ...\n%s" % (s[:head], len(s) - head - tail, s[-tail:])


def _json_header(h, shrink=("traceback", "error", "msg")):
    """_json_header encodes a frame header, shortening its long text fields until it fits."""
    limit = MAX_HEADER // 2
    while True:
        b = json.dumps(h, separators=(",", ":")).encode("ascii")
        if len(b) <= MAX_HEADER:
            return b
        limit //= 2
        for k in shrink:
            if isinstance(h.get(k), str):
                h[k] = _truncate(h[k], limit)


def _ok_header(cid):
    return b'{"type":"result","id":%d,"ok":true}' % cid


def _error_header(cid, error, tb=None, **extra):
    h = {"type": "result", "id": cid, "ok": False, "error": _truncate(error, 8192)}
    if tb:
        h["traceback"] = _truncate(tb, 32768)
    h.update(extra)
    return _json_header(h)


def _cancelled_header(cid, error="cancelled"):
    return _error_header(cid, error, cancelled=True)


def _describe(e):
    msg = str(e)
    return "%s: %s" % (type(e).__name__, msg) if msg else type(e).__name__


def _format_tb(e):
    """_format_tb formats e's traceback without this module's frames at its top."""
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == _THIS_FILE:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(e), e, tb))


_THIS_FILE = _format_tb.__code__.co_filename


def _exit_reason(status):
    if os.WIFSIGNALED(status):
        n = os.WTERMSIG(status)
        try:
            name = signal.Signals(n).name
        except ValueError:
            name = "signal %d" % n
        return "killed by %s" % name
    return "exited with status %d" % os.WEXITSTATUS(status)


class _Call:
    __slots__ = ("id", "fn", "body", "timeout_ms", "deadline", "state", "cancelled", "pid", "dir", "key")

    def __init__(self, cid, fn, body, timeout_ms, cdir=None, key=None):
        self.id = cid
        self.fn = fn
        self.body = body
        self.timeout_ms = timeout_ms
        self.dir = cdir
        self.key = key
        self.deadline = None
        self.state = _PENDING
        self.cancelled = False
        self.pid = 0


class _ProtocolError(Exception):
    pass


class _Server:
    """_Server runs one library process: a reader thread, `slots` call threads, and the
    main thread, which waits for the stop signal and exits."""

    def __init__(self, lib, state, slots, mode, out_fd, in_fd):
        self.lib = lib
        self.functions = lib._functions
        self.state = state
        self.slots = slots
        self.fork = mode == "fork"
        self.out_fd = out_fd
        self.in_fd = in_fd
        self.olock = threading.Lock()  # guards outq, writing
        self.outq = []  # buffers of whole frames waiting to be written, in order
        self.writing = False  # a thread is writing outq to out_fd
        self.flushed = threading.Condition(self.olock)  # notified when writing stops
        self.wlock = None  # in a forked child: guards writes to child_fd
        self.lock = threading.Lock()  # guards calls, active, every _Call's state/cancelled/pid
        self.idle = threading.Condition(self.lock)  # notified when active drops to 0
        self.calls = {}  # id -> _Call, until its result is taken
        self.active = 0  # calls received and not yet fully answered
        self.queue = queue.SimpleQueue()
        self.fork_lock = threading.Lock()  # pipe+fork+close: no child inherits another's pipe
        self.stop_event = threading.Event()
        self.exit_code = None
        self.exit_msg = None
        self.child_fd = None  # in a forked child: the pipe to the parent
        self.warned = set()
        self.prctl = None
        self.big_pipes = True
        self.pid = os.getpid()

    # --- lifecycle ---------------------------------------------------------------------------

    def run(self, line):
        global _server
        if self.fork:
            self._prepare_fork()
        try:
            _write_all(self.out_fd, line)
        except OSError as e:
            return self._report(EXIT_PROTOCOL, "trellis_library: write handshake: %s" % e)
        _server = self
        for i in range(self.slots):
            threading.Thread(target=self._call_loop, name="trellis-call-%d" % i, daemon=True).start()
        threading.Thread(target=self._read_loop, name="trellis-reader", daemon=True).start()
        try:
            while not self.stop_event.wait(1.0):
                pass
        except KeyboardInterrupt:
            self.stop(130, "trellis_library: interrupted")
        code, msg = self.exit_code, self.exit_msg
        if code == EXIT_OK:
            self._drain()
            self._flush(1.0)
        self._kill_children()
        return self._report(code, msg)

    def _report(self, code, msg):
        if msg:
            sys.stderr.write(msg + "\n")
        return code

    def stop(self, code, msg=None):
        """stop asks the main thread to end the process; the first reason wins."""
        with self.lock:
            if self.exit_code is None:
                self.exit_code, self.exit_msg = code, msg
        self.stop_event.set()

    def _drain(self):
        """_drain waits up to stop_grace for the calls received to be answered."""
        deadline = time.monotonic() + self.lib.stop_grace
        with self.lock:
            while self.active > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.idle.wait(left)

    def _kill_children(self):
        if not self.fork:
            return
        with self.lock:
            pids = [c.pid for c in self.calls.values() if c.pid]
        for pid in pids:
            _kill(pid)

    # --- output ------------------------------------------------------------------------------

    def _send(self, header, body=b""):
        """_send sends one frame to the worker. Frames go out in order, unbuffered: the
        first sender writes; frames queued while it writes go out in its next write (group
        commit), and their senders return at once. A failed write stops the process."""
        frame = _PREFIX.pack(len(header), len(body)) + header
        with self.olock:
            if body:
                if len(body) <= _SMALL_WRITE:
                    self.outq.append(frame + body)
                else:
                    self.outq.append(frame)
                    self.outq.append(body)
            else:
                self.outq.append(frame)
            if self.writing:
                return
            self.writing = True
        try:
            while True:
                with self.olock:
                    bufs = self.outq
                    if not bufs:
                        self.writing = False
                        self.flushed.notify_all()
                        return
                    self.outq = []
                _writev_all(self.out_fd, bufs)
        except BaseException as e:
            with self.olock:
                self.writing = False
                self.outq = []
                self.flushed.notify_all()
            if not self.stop_event.is_set():
                self.stop(EXIT_PROTOCOL, "trellis_library: write to worker: %s" % _describe(e))

    def _flush(self, timeout):
        """_flush waits up to timeout seconds for the frames queued to be written."""
        deadline = time.monotonic() + timeout
        with self.olock:
            while self.writing or self.outq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.flushed.wait(left)

    def log(self, msg):
        header = _json_header({"type": "log", "msg": msg})
        if self.child_fd is not None:
            with self.wlock:
                _write_all(self.child_fd, _PREFIX.pack(len(header), 0) + header)
        else:
            self._send(header)

    def _done_one(self):
        with self.lock:
            self.active -= 1
            if self.active == 0:
                self.idle.notify_all()

    # --- input -------------------------------------------------------------------------------

    def _read_loop(self):
        """_read_loop reads frames until the end of stdin or a protocol error, then stops."""
        try:
            # closefd=False: the descriptor stays open (and its number taken) for the
            # process's life, so a forked child can close exactly this one.
            inp = os.fdopen(self.in_fd, "rb", buffering=1 << 16, closefd=False)
            read = inp.read
            unpack = _PREFIX.unpack
            loads = json.loads
            while True:
                prefix = read(8)
                if not prefix:
                    self.stop(EXIT_OK)
                    return
                if len(prefix) < 8:
                    raise _ProtocolError("stream ended inside a frame prefix")
                hlen, blen = unpack(prefix)
                if hlen > MAX_HEADER:
                    raise _ProtocolError("header length %d over %d" % (hlen, MAX_HEADER))
                if blen > MAX_BODY:
                    raise _ProtocolError("body length %d over %d" % (blen, MAX_BODY))
                hb = read(hlen)
                if len(hb) < hlen:
                    raise _ProtocolError("stream ended inside a header")
                body = read(blen) if blen else b""
                if len(body) < blen:
                    raise _ProtocolError("stream ended inside a body (%d of %d bytes)" % (len(body), blen))
                try:
                    h = loads(hb.decode("utf-8"))
                except (ValueError, RecursionError) as e:
                    raise _ProtocolError("header is not JSON: %s" % _describe(e)) from None
                if type(h) is not dict:
                    raise _ProtocolError("header is not a JSON object")
                t = h.get("type")
                if t == "call":
                    self._on_call(h, body)
                elif t == "cancel":
                    self._on_cancel(h)
                elif repr(t) not in self.warned and len(self.warned) < 100:
                    self.warned.add(repr(t))
                    sys.stderr.write("trellis_library: ignoring frames of unknown type %r\n" % (t,))
        except _ProtocolError as e:
            self.stop(EXIT_PROTOCOL, "trellis_library: malformed frame from worker: %s" % e)
        except BaseException as e:
            self.stop(EXIT_PROTOCOL, "trellis_library: reading from worker: %s" % _describe(e))

    def _on_call(self, h, body):
        cid = _check_id(h.get("id"))
        fn = h.get("fn")
        if type(fn) is not str:
            raise _ProtocolError("call %d: fn is not a string" % cid)
        t = h.get("timeout_ms", 0)
        if t is None:
            t = 0
        if type(t) not in (int, float) or not 0 <= t < 1e15:
            raise _ProtocolError("call %d: bad timeout_ms %r" % (cid, t))
        cdir = h.get("dir") or None
        if cdir is not None and type(cdir) is not str:
            raise _ProtocolError("call %d: dir is not a string" % cid)
        key = h.get("key") or None
        if key is not None and type(key) is not str:
            raise _ProtocolError("call %d: key is not a string" % cid)
        call = _Call(cid, fn, body, t, cdir, key)
        with self.lock:
            if cid in self.calls:
                raise _ProtocolError("call id %d is already running" % cid)
            if self.stop_event.is_set():
                return
            self.active += 1
            if fn not in self.functions:
                call.state = _DONE
            else:
                self.calls[cid] = call
        if call.state == _DONE:
            self._send(_error_header(cid, "unknown function %r (library %s serves %s)"
                                     % (fn, self.lib.name, ", ".join(self.functions))))
            self._done_one()
            return
        self.queue.put(call)

    def _on_cancel(self, h):
        cid = _check_id(h.get("id"))
        pid = 0
        dropped = False
        with self.lock:
            call = self.calls.get(cid)
            if call is None:  # answered already: a normal race
                return
            if call.state == _PENDING:
                call.state = _DONE
                del self.calls[cid]
                dropped = True
            else:
                call.cancelled = True
                pid = call.pid
        if dropped:
            self._send(_cancelled_header(cid))
            self._done_one()
        elif pid:
            _kill(pid)

    # --- running calls -----------------------------------------------------------------------

    def _call_loop(self):
        """_call_loop runs queued calls, one at a time, until the process exits."""
        get = self.queue.get
        while True:
            call = get()
            with self.lock:
                if call.state != _PENDING:
                    continue
                call.state = _RUNNING
            if call.timeout_ms:
                call.deadline = time.monotonic() + call.timeout_ms / 1000.0
            try:
                if self.fork:
                    self._run_forked(call)
                else:
                    header, body = self._execute(call)
                    self._finish(call, header, body)
            except BaseException as e:  # a bug here or no resources (fds, memory): fail the call
                try:
                    sys.stderr.write("trellis_library: call %d: %s\n" % (call.id, _format_tb(e)))
                    self._finish(call, _error_header(call.id, "LibraryError: %s" % _describe(e)), b"")
                except BaseException:
                    pass

    def _finish(self, call, header, body):
        with self.lock:
            if self.calls.pop(call.id, None) is None:
                return
            call.state = _DONE
            if call.cancelled:
                header, body = _cancelled_header(call.id), b""
        self._send(header, body)
        self._done_one()

    def _execute(self, call):
        """_execute runs call's function here and returns the result frame's header and body."""
        f = self.functions[call.fn]
        body = call.body
        call.body = None
        try:
            if f.raw:
                args = body
            else:
                try:
                    args = json.loads(body) if body else None
                except (ValueError, RecursionError) as e:
                    return _error_header(call.id, "ArgumentError: arguments are not JSON: %s" % _describe(e)), b""
            del body
            _local.call = call
            result = f.invoke(args, self.state)
            del args
            if f.raw:
                if result is None:
                    out = b""
                elif isinstance(result, str):
                    out = result.encode("utf-8")
                else:
                    out = memoryview(result).cast("B")
            else:
                try:
                    s = _encode(result)
                except TypeError as e:
                    raise TypeError("result of %s is not JSON-serializable: %s" % (call.fn, e)) from None
                try:
                    out = s.encode("utf-8")
                except UnicodeEncodeError:  # lone surrogates
                    out = json.dumps(result, separators=(",", ":"), allow_nan=False).encode("ascii")
            if len(out) > MAX_BODY:
                return _error_header(call.id, "ResultTooLarge: result of %s is %d bytes, over %d"
                                     % (call.fn, len(out), MAX_BODY)), b""
            return _ok_header(call.id), out
        except BaseException as e:
            return _error_header(call.id, _describe(e), _format_tb(e)), b""
        finally:
            _local.call = None

    # --- fork mode ---------------------------------------------------------------------------

    def _prepare_fork(self):
        if sys.version_info >= (3, 12):
            import warnings

            warnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead to deadlocks",
                                    category=DeprecationWarning)
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                self.prctl = ctypes.CDLL(None, use_errno=True).prctl
            except Exception:
                self.prctl = None

    def _run_forked(self, call):
        """_run_forked runs call in a forked child and relays its log and result frames."""
        if call.cancelled:  # cancelled between being taken and here
            self._finish(call, None, b"")
            return
        with self.fork_lock:
            r, w = os.pipe()
            if _F_SETPIPE_SZ is not None and self.big_pipes:
                try:
                    fcntl.fcntl(w, _F_SETPIPE_SZ, 1 << 20)
                except OSError:
                    self.big_pipes = False
            try:
                pid = os.fork()
            except OSError as e:
                os.close(r)
                os.close(w)
                self._finish(call, _error_header(call.id, "ForkError: %s" % e), b"")
                return
            if pid == 0:
                self._child_main(call, r, w)  # never returns
            os.close(w)
        call.body = None  # the child has its copy
        with self.lock:
            call.pid = pid
            kill_now = call.cancelled
        if kill_now:
            _kill(pid)
        timed_out = False
        result = None
        try:
            poller = select.poll()
            poller.register(r, select.POLLIN)
            buf = bytearray()
            while True:
                if call.deadline is not None:
                    left = call.deadline - time.monotonic()
                    if left <= 0:
                        timed_out = True
                        call.deadline = None
                        _kill(pid)
                        continue
                    if not poller.poll(left * 1000.0 + 1):
                        continue
                data = os.read(r, 1 << 20)
                if not data:
                    break
                buf += data
                while len(buf) >= 8:
                    hlen, blen = _PREFIX.unpack_from(buf)
                    end = 8 + hlen + blen
                    if len(buf) < end:
                        break
                    with memoryview(buf) as mv:
                        header = mv[8 : 8 + hlen].tobytes()
                        if header.startswith(b'{"type":"log"'):
                            self._send(header)
                        elif result is None:
                            result = (header, mv[8 + hlen : end].tobytes())
                            call.deadline = None  # answered in time; the child is exiting
                    del buf[:end]
        finally:
            os.close(r)
            with self.lock:
                call.pid = 0
            _, status = os.waitpid(pid, 0)
        if timed_out:
            header, body = _error_header(call.id, "timed out after %d ms" % call.timeout_ms, timed_out=True), b""
        elif result is not None and status == 0:
            header, body = result
        else:
            header, body = _error_header(call.id, "call process %s without a result" % _exit_reason(status)), b""
        self._finish(call, header, body)

    def _child_main(self, call, r, w):
        code = 0
        try:
            for fd in (r, self.out_fd, self.in_fd):
                try:
                    os.close(fd)
                except OSError:
                    pass
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if self.prctl is not None:
                self.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG: die with the library
                if os.getppid() != self.pid:
                    os._exit(1)
            self.child_fd = w
            self.wlock = threading.Lock()
            header, body = self._execute(call)
            with self.wlock:
                _write_all(w, _PREFIX.pack(len(header), len(body)) + header)
                if body:
                    _write_all(w, body)
        except BaseException:
            code = 70
            try:
                traceback.print_exc()
            except BaseException:
                pass
        finally:
            try:
                sys.stderr.flush()
            except BaseException:
                pass
            os._exit(code)


def _check_id(cid):
    if type(cid) is not int or not 0 <= cid < 1 << 64:
        raise _ProtocolError("bad call id %r" % (cid,))
    return cid


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
