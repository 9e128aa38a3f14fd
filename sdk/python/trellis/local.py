"""A local cluster: the trellis binary started as a manager and workers on
127.0.0.1, stopped when the client closes (or the Python process exits)."""

import atexit
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from . import errors
from .client import Cluster


def find_binary(binary=None):
    """find_binary returns the trellis binary: binary, $TRELLIS_BIN, or
    trellis on PATH."""
    b = binary or os.environ.get("TRELLIS_BIN") or shutil.which("trellis")
    if not b or not os.access(b, os.X_OK):
        raise errors.TrellisError("the trellis binary was not found (%r): put it on PATH, set TRELLIS_BIN, "
                                  "or pass binary= (in the repository: make build, then bin/trellis)" % (binary or b,))
    return os.path.abspath(b)


class LocalCluster:
    """LocalCluster owns the manager and worker processes of trellis.local."""

    def __init__(self, workers, binary, cores, memory_mb, log_level):
        self.binary = find_binary(binary)
        self.dir = tempfile.mkdtemp(prefix="trellis-local-")
        self.secret_file = os.path.join(self.dir, "secret")
        with open(os.open(self.secret_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(secrets.token_hex(16) + "\n")
        self.procs = []
        self._stopped = False
        self._lock = threading.Lock()
        atexit.register(self.stop)
        try:
            self.addr = self._start_manager(log_level)
            for i in range(workers):
                args = [self.binary, "worker", self.addr, "--secret-file", self.secret_file, "--name", "local-%d" % (i + 1),
                        "--workdir", os.path.join(self.dir, "worker-%d" % (i + 1)), "--log-level", log_level]
                if cores is not None:
                    args += ["--cores", str(cores)]
                if memory_mb is not None:
                    args += ["--memory", str(memory_mb)]
                self._spawn(args, "worker-%d" % (i + 1))
        except BaseException:
            self.stop()
            raise

    def _spawn(self, args, what):
        log = open(os.path.join(self.dir, what + ".log"), "wb")
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if what == "manager" else log,
                             stderr=log, start_new_session=True)
        log.close()
        self.procs.append(p)
        return p

    def _start_manager(self, log_level):
        p = self._spawn([self.binary, "manager", "--listen", "127.0.0.1:0", "--secret-file", self.secret_file,
                         "--store", os.path.join(self.dir, "store"), "--log-level", log_level], "manager")
        line = p.stdout.readline().decode("utf-8", "replace")
        p.stdout.close()
        prefix = "trellis manager listening on "
        if not line.startswith(prefix):
            p.wait(5)
            raise errors.TrellisError("the trellis manager did not start (exit status %s); its log: %s"
                                      % (p.returncode, self.log("manager")))
        return line[len(prefix):].strip()

    def log(self, what):
        """log returns the tail of a process's log (manager, worker-1 ...)."""
        try:
            with open(os.path.join(self.dir, what + ".log"), "rb") as f:
                return f.read()[-4000:].decode("utf-8", "replace")
        except OSError as e:
            return "(no log: %s)" % e

    def stop(self):
        """stop stops the workers (handing back their tasks at once: two
        SIGTERMs) and then the manager, killing what lingers."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        workers, manager = self.procs[1:], self.procs[:1]
        for group in (workers, manager):
            for p in group:
                _signal(p, signal.SIGTERM)
            if group is workers:
                time.sleep(0.05)
                for p in group:
                    _signal(p, signal.SIGTERM)  # the second: hand back everything at once
            deadline = time.monotonic() + 10
            for p in group:
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal(p, signal.SIGKILL, group=True)
                    p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        atexit.unregister(self.stop)


def _signal(p, sig, group=False):
    try:
        if group:
            os.killpg(p.pid, sig)
        else:
            p.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


def local(workers=2, *, binary=None, cores=None, memory_mb=None, log_level="warn", manager_timeout=60.0, on_event=None,
          direct_calls=False):
    """local starts a manager and workers (the trellis binary: binary,
    $TRELLIS_BIN or PATH) on 127.0.0.1 and returns a Cluster connected to
    them; closing it stops them. cores and memory_mb cap each worker;
    on_event and direct_calls as for connect."""
    lc = LocalCluster(workers, binary, cores, memory_mb, log_level)
    try:
        with open(lc.secret_file) as f:
            secret = f.read().strip()
        c = Cluster(lc.addr, secret, manager_timeout=manager_timeout, on_event=on_event, on_close=lc.stop, direct_calls=direct_calls)
    except BaseException:
        lc.stop()
        raise
    c.local = lc
    return c
