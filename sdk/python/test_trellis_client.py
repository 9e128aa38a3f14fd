"""Tests of the trellis Python client against a real cluster: the trellis
binary ($TRELLIS_BIN, else bin/trellis of the repository: make build) as a
manager and two workers on 127.0.0.1.

    python3 -m unittest discover -s sdk/python -p 'test_trellis_client.py'
"""

import concurrent.futures
import hashlib
import io
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

import trellis

HERE = os.path.dirname(os.path.abspath(__file__))
BINARY = os.environ.get("TRELLIS_BIN") or os.path.join(HERE, "..", "..", "bin", "trellis")
WAIT = 60.0  # the longest a task may take to come back: a hang, not speed

sys.path.insert(0, os.path.join(HERE, "testdata"))
import pyfuncs  # noqa: E402


def poll(what, fn, timeout=WAIT):
    """poll returns fn()'s first true value, failing after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


class ClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(BINARY, os.X_OK):
            raise AssertionError("no trellis binary at %s: run make build, or set TRELLIS_BIN" % BINARY)
        cls.c = trellis.local(workers=2, binary=BINARY, cores=2)
        cls.tmp = tempfile.mkdtemp(prefix="trellis-pytest-")

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, self._testMethodName + "-" + name)

    def test_files_env_and_tails(self):
        local = self.path("in.bin")
        data = bytes(range(256)) * 1000  # 256 KB: over the inline limit, so uploaded
        with open(local, "wb") as f:
            f.write(data)
        t = trellis.Task("cat big small > both; echo out-$GREETING; echo err >&2", env={"GREETING": "hi"})
        t.add_input(trellis.LocalFile(local), "big")
        t.add_input(trellis.Buffer(b"\x00small\xff"), "small")
        out = self.path("both")
        t.add_output(trellis.Output(out), "both")
        r = self.c.submit(t)[0].result(WAIT)
        self.assertEqual((r.kind, r.exit_code, r.stdout, r.stderr), ("success", 0, b"out-hi\n", b"err\n"))
        with open(out, "rb") as f:
            self.assertEqual(f.read(), data + b"\x00small\xff")

    def test_effects(self):
        t = trellis.Task('printf %s "$TRELLIS_IDEMPOTENCY_KEY"', key="pay", effects="idempotent", deterministic=True)
        r = self.c.submit(t)[0].result(WAIT)
        self.assertEqual(r.kind, "success")
        self.assertTrue(r.stdout.endswith(b"/pay"), r.stdout)
        c = trellis.Call("lib", "f", effects="at-most-once")
        self.assertEqual(c.effects, "at-most-once")
        with self.assertRaises(trellis.InvalidError):
            trellis.Task("true", effects="at-most-one")

    def test_keep(self):
        for keep in ("lineage", "replicate 2"):
            r = self.c.submit(trellis.Task("true", keep=keep))[0].result(WAIT)
            self.assertEqual(r.kind, "success", keep)
        self.assertEqual(trellis.Task("true", keep="checkpoint").keep, ("KEEP_CHECKPOINT_ASYNC", 0))
        for bad in ("replicate 1", "checkpoint later"):
            with self.assertRaises(trellis.InvalidError):
                trellis.Task("true", keep=bad)

    def test_directory_input(self):
        root = self.path("tree")
        make_tree(root)
        t = trellis.Task("cd d && find . | LC_ALL=C sort && cat sub/f.txt && test -x run.sh && readlink sub/link")
        t.add_input(trellis.LocalFile(root), "d")
        r = self.c.submit(t)[0].result(WAIT)
        want = "\n".join([".", "./empty", "./run.sh", "./sub", "./sub/f.txt", "./sub/link",
                          "./sub/" + "n" * 120, "./sub/é"]) + "\nin a tree\nf.txt\n"
        self.assertEqual(r.stdout.decode(), want)

    def test_directory_output(self):
        t = trellis.Task("mkdir -p d/sub && printf one > d/a && printf two > d/sub/b")
        out = self.path("d")
        t.add_output(trellis.Output(out), "d")
        self.c.submit(t)[0].result(WAIT)
        got = {}
        for root, _, names in os.walk(out):
            for n in names:
                with open(os.path.join(root, n)) as f:
                    got[os.path.relpath(os.path.join(root, n), out)] = f.read()
        self.assertEqual(got, {"a": "one", os.path.join("sub", "b"): "two"})

    def test_failure_raises_with_kind_code_and_stderr(self):
        f = self.c.submit(trellis.Task("echo it broke >&2; exit 3", retries=0))[0]
        with self.assertRaises(trellis.TaskError) as cm:
            f.result(WAIT)
        e = cm.exception
        self.assertEqual((e.kind, e.exit_code, e.stderr), ("failed", 3, b"it broke\n"))
        self.assertIn("it broke", str(e))

    def test_time_limit(self):
        f = self.c.submit(trellis.Task("sleep 30", time_limit=0.5, retries=0))[0]
        with self.assertRaises(trellis.TaskError) as cm:
            f.result(WAIT)
        self.assertEqual(cm.exception.kind, "timed out")

    def test_after_temp_and_fetch(self):
        tmp = trellis.Temp().keep()  # else pruned once b has read it
        a = trellis.Task("printf abc > t").add_output(tmp, "t")
        b = trellis.Task("cat t t > u", after=[a]).add_input(tmp, "t")
        u = self.path("u")
        b.add_output(trellis.Output(u), "u")
        fa, fb = self.c.submit(a, b)
        fb.result(WAIT)
        self.assertTrue(fa.done())
        with open(u) as f:
            self.assertEqual(f.read(), "abcabc")
        got = self.path("t")
        self.c.fetch(tmp, got)
        with open(got) as f:
            self.assertEqual(f.read(), "abc")

    def test_temp_pruned_once_read(self):
        tmp = trellis.Temp().prune_depth(0)
        a = trellis.Task("printf abc > t").add_output(tmp, "t")
        b = trellis.Task("cat t > u").add_input(tmp, "t")
        b.add_output(trellis.Output(self.path("u")), "u")
        for f in self.c.submit(a, b):
            f.result(WAIT)
        with self.assertRaises(trellis.TrellisError) as cm:
            self.c.fetch(tmp, self.path("t"))
        self.assertIn("keep", str(cm.exception))

    def test_url_and_unpack(self):
        src = self.path("data.txt")
        with open(src, "w") as f:
            f.write("from a url\n")
        archive = self.path("a.tar.gz")
        with tarfile.open(archive, "w:gz") as tar:
            info = tarfile.TarInfo("dir/x.txt")
            body = b"inside the archive\n"
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        t = trellis.Task("cat u.txt a/dir/x.txt")
        t.add_input(trellis.URL("file://" + src), "u.txt")
        t.add_input(trellis.Unpack(trellis.LocalFile(archive)), "a")
        r = self.c.submit(t)[0].result(WAIT)
        self.assertEqual(r.stdout, b"from a url\ninside the archive\n")

    def test_cancel(self):
        f = self.c.submit(trellis.Task("sleep 60", name="sleeper"))[0]
        poll("the task to run", lambda: f.task_id in running(self.c))
        self.assertTrue(f.cancel())
        with self.assertRaises(concurrent.futures.CancelledError):
            f.result(1)
        poll("the manager to stop the task", lambda: f.task_id not in running(self.c))

    def test_cancel_workflow(self):
        a = self.c.submit(trellis.Task("sleep 60", name="a", workflow="py-alpha"))[0]
        b = self.c.submit(trellis.Task("echo b", name="b", workflow="py-beta"))[0]
        poll("task a to run", lambda: a.task_id in running(self.c))
        self.assertEqual(self.c.cancel_workflow("py-alpha"), 1)
        with self.assertRaises(trellis.TaskError) as ended:  # cancelled by the manager, not by this client
            a.result(WAIT)
        self.assertEqual(ended.exception.kind, "cancelled")
        self.assertEqual(b.result(WAIT).stdout, b"b\n")
        with self.assertRaises(trellis.NotFoundError):
            self.c.cancel_workflow("py-nosuch")

    def test_keys_unique_in_session(self):
        self.c.submit(trellis.Task("true", key="k1"))[0].result(WAIT)
        with self.assertRaises(trellis.InvalidError):
            self.c.submit(trellis.Task("true", key="k1"))
        with self.assertRaises(trellis.InvalidError):
            self.c.submit(trellis.Task("true", key="~1"))

    def test_many_tasks_and_a_broken_stream(self):
        # The event stream breaks again and again while tasks end: the
        # client resumes it after the last event it applied, and every
        # future resolves once, with its own output.
        futures = self.c.submit([trellis.Task("echo %d" % i, cores=0.1) for i in range(300)])
        pending = set(futures)
        deadline = time.monotonic() + WAIT
        while pending:
            self.assertLess(time.monotonic(), deadline, "%d tasks never ended" % len(pending))
            s = self.c._stream
            if s is not None:
                s.close()
            done, pending = concurrent.futures.wait(pending, timeout=0.1)
        for i, f in enumerate(futures):
            self.assertEqual(f.result().stdout, b"%d\n" % i)

    def test_library_calls(self):
        lib = trellis.Library.from_functions(pyfuncs.add, pyfuncs.scaled, pyfuncs.boom, pyfuncs.echo_bytes,
                                             setup=pyfuncs.load, name="pyfuncs", slots=2)
        self.c.install(lib)
        self.assertEqual(self.c.call(lib, "add", [2, 3], timeout=WAIT), 5)
        futures = [self.c.call_async("pyfuncs", "scaled", [i]) for i in range(20)]
        got = [f.result(WAIT) for f in futures]
        self.assertEqual([g["value"] for g in got], [i * 10 for i in range(20)])
        big = self.c.call(lib, "echo_bytes", [3 << 20], timeout=WAIT)  # a result over the inline limit
        self.assertEqual(big, "x" * (3 << 20))
        long = "y" * (2 << 20)  # arguments over the inline limit travel as a file
        self.assertEqual(self.c.call(lib, "add", [long, "z"], timeout=WAIT), long + "z")
        with self.assertRaises(trellis.CallError) as cm:
            self.c.call(lib, "boom", ["zzz"], timeout=WAIT, retries=0)
        e = cm.exception
        self.assertEqual(e.kind, "failed")
        self.assertIn("ValueError: bad input: zzz", e.message)
        self.assertIn('raise ValueError("bad input', e.traceback)
        self.assertIn("remote traceback", str(e))

    def test_call_results_raw_and_not_json(self):
        lib = trellis.Library.from_module(os.path.join(HERE, "testdata", "testlib.py"), "testlib-raw", slots=2)
        self.c.install(lib)
        self.assertEqual(self.c.call(lib, "echo_raw", b"\x00\xff raw", raw=True, timeout=WAIT), b"\x00\xff raw")
        self.assertEqual(self.c.call(lib, "echo_raw", {"a": [1, None]}, timeout=WAIT), {"a": [1, None]})
        t = trellis.Call("testlib-raw", "echo_raw", b"{not json", raw=True)
        t._raw = False  # the arguments go as they are; the result is read as JSON
        with self.assertRaises(trellis.CallError) as cm:
            self.c.submit(t)[0].result(WAIT)
        self.assertIn("the call's result is not JSON", cm.exception.message)

    def test_call_timeout_cancels(self):
        lib = trellis.Library.from_functions(pyfuncs.nap, name="napper", mode="fork")
        self.c.install(lib)
        with self.assertRaises(concurrent.futures.TimeoutError):
            self.c.call(lib, "nap", [30], timeout=0.5)
        poll("the call to be stopped", lambda: not running(self.c) and
             not any(l.get("instances", [{}])[0].get("busy") for l in self.c.status().get("libraries", ()) if l["name"] == "napper"))
        with self.assertRaises(trellis.CallError) as cm:
            self.c.call(lib, "nap", [30], time_limit=0.5, retries=0, timeout=WAIT)
        self.assertEqual(cm.exception.kind, "timed out")

    def test_executor(self):
        ex = trellis.Executor(self.c)
        self.assertEqual(ex.submit(pyfuncs.add, 2, b=5).result(WAIT), 7)
        self.assertEqual(list(ex.map(pyfuncs.add, range(10), range(10), timeout=WAIT)), [2 * i for i in range(10)])
        with self.assertRaises(trellis.CallError) as cm:
            ex.submit(pyfuncs.boom, "q").result(WAIT)
        self.assertIn("ValueError: bad input: q", str(cm.exception))
        self.assertIn("remote traceback", str(cm.exception))
        k = 3

        def closure(v):
            return v * k
        if trellis.executor._cloudpickle is None:
            with self.assertRaises(trellis.InvalidError) as cm:
                ex.submit(closure, 2)
            self.assertIn("test_executor.<locals>.closure", str(cm.exception))
        else:
            self.assertEqual(ex.submit(closure, 2).result(WAIT), 6)

    def test_calls_in_chunks(self):
        # Over 1,000 independent calls go in several Submit messages, the
        # next encoded while the manager takes the one before.
        lib = trellis.Library.from_functions(pyfuncs.add, name="chunks", slots=4)
        self.c.install(lib)
        futures = self.c.submit([trellis.Call("chunks", "add", [i, 1]) for i in range(2500)])
        self.assertEqual([f.result(WAIT) for f in futures], [i + 1 for i in range(2500)])
        self.assertEqual(len({f.task_id for f in futures}), 2500)

    def test_events(self):
        events = []
        c = trellis.connect(self.c.addr, secret_file=self.c.local.secret_file, on_event=events.append)
        self.addCleanup(c.close)
        f = c.submit(trellis.Task("true", name="evented"))[0]
        f.result(WAIT)
        states = [e.state for e in events if e.task_id == f.task_id]
        self.assertEqual((states[-1], "running" in states), ("done", True))
        # Both are told in one event of the manager's: each gets its own.
        gs = c.submit([trellis.Task("true", cores=64, name="too big"), trellis.Task("true", cores=64, name="too big too")])
        for g in gs:
            why = poll("the unplaceable reason", lambda: [e.unplaceable for e in events if e.task_id == g.task_id and e.unplaceable])
            self.assertIn("64 cores", why[0])
        for g in gs:
            g.cancel()

    def test_wrong_secret(self):
        with self.assertRaises(trellis.AuthError):
            trellis.connect(self.c.addr, secret="not-the-secret")


def make_tree(root):
    """make_tree makes a directory with an empty directory, an executable, a
    link, a long name and a name that is not ASCII."""
    os.makedirs(os.path.join(root, "sub"))
    os.makedirs(os.path.join(root, "empty"))
    with open(os.path.join(root, "sub", "f.txt"), "w") as f:
        f.write("in a tree\n")
    with open(os.path.join(root, "run.sh"), "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(os.path.join(root, "run.sh"), 0o755)
    os.symlink("f.txt", os.path.join(root, "sub", "link"))
    for n in ("n" * 120, "é"):
        with open(os.path.join(root, "sub", n), "w") as f:
            f.write(n)


def running(c):
    """running maps the IDs of the tasks running on the cluster to their workers."""
    out = {}
    for w in c.status().get("workers", ()):
        for t in w.get("running", ()):
            out[int(t)] = w["name"]
    return out


class DirectCallsTest(unittest.TestCase):
    """Blocking calls straight to the workers (direct_calls=True)."""

    def test_direct_calls(self):
        c = trellis.local(workers=2, binary=BINARY, cores=2, direct_calls=True)
        self.addCleanup(c.close)
        lib = trellis.Library.from_functions(pyfuncs.add, pyfuncs.boom, pyfuncs.echo_bytes, pyfuncs.nap,
                                             setup=pyfuncs.load, name="direct", slots=2, mode="fork")
        c.install(lib)
        # The first calls may go through the manager: a lease is lent only
        # on a ready instance.
        poll("a call to go direct", lambda: c.call(lib, "add", [1, 2], timeout=WAIT) == 3 and c.direct_stats()[0] > c.direct_stats()[1])
        sent, fell = c.direct_stats()
        for i in range(50):
            self.assertEqual(c.call(lib, "add", [i, i], timeout=WAIT), 2 * i)
        self.assertEqual(c.call(lib, "add", ["a\u00e9", "b"], timeout=WAIT), "a\u00e9b")
        self.assertEqual(c.call(lib, "add", [[1], [2]], time_limit=30, timeout=WAIT), [1, 2])
        with self.assertRaises(trellis.CallError) as cm:
            c.call(lib, "boom", ["zzz"], timeout=WAIT)
        self.assertIn("ValueError: bad input: zzz", cm.exception.message)
        self.assertIn("remote traceback", str(cm.exception))
        with self.assertRaises(trellis.CallError) as cm:
            c.call(lib, "nap", [30], time_limit=0.5, timeout=WAIT)
        self.assertEqual(cm.exception.kind, "timed out")
        sent2, fell2 = c.direct_stats()
        self.assertEqual((sent2 - sent, fell2 - fell), (54, 0), "every call on the lease went direct")
        # A result over what an answer carries (16 MiB) runs again through the manager.
        self.assertEqual(c.call(lib, "echo_bytes", [17 << 20], timeout=WAIT), "x" * (17 << 20))
        self.assertEqual(c.direct_stats()[1], fell2 + 1)
        # Calls from several threads share the lease's slots; more than it
        # has go through the manager.
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            got = list(ex.map(lambda i: c.call(lib, "add", [i, 1], timeout=WAIT), range(200)))
        self.assertEqual(got, [i + 1 for i in range(200)])
        # The status counts every direct call as a call of the library.
        done = poll("the calls to be counted", lambda: [l for l in c.status().get("libraries", ()) if l["name"] == "direct"
                                                        and int(l.get("callsDone", 0)) >= 255])
        self.assertTrue(done)

    def test_direct_call_timeout_keeps_the_lease(self):
        c = trellis.local(workers=1, binary=BINARY, cores=2, direct_calls=True)
        self.addCleanup(c.close)
        lib = trellis.Library.from_functions(pyfuncs.add, pyfuncs.nap, name="napdirect", slots=2, mode="fork")
        c.install(lib)
        poll("a call to go direct", lambda: c.call(lib, "add", [1, 2], timeout=WAIT) == 3 and c.direct_stats()[0] > c.direct_stats()[1])
        with self.assertRaises(concurrent.futures.TimeoutError):
            c.call(lib, "nap", [2], timeout=0.3)
        self.assertEqual(c._direct.leases("napdirect"), 1)
        sent, fell = c.direct_stats()
        self.assertEqual(c.call(lib, "add", [2, 2], timeout=WAIT), 4)
        self.assertEqual(c.direct_stats(), (sent + 1, fell))

    def test_direct_call_worker_lost(self):
        # The worker of the lease is killed: the next call, sent on the
        # lease, fails on the way and goes through the manager, which runs
        # it on the other worker.
        c = trellis.local(workers=2, binary=BINARY, cores=2, direct_calls=True)
        self.addCleanup(c.close)
        lib = trellis.Library.from_functions(pyfuncs.add, name="lost", slots=2)
        c.install(lib)
        poll("a call to go direct", lambda: c.call(lib, "add", [1, 2], timeout=WAIT) == 3 and c.direct_stats()[0] > c.direct_stats()[1])
        lost = next(l for l in c.status()["libraries"] if l["name"] == "lost")
        ready = [i["worker"] for i in lost.get("instances", ()) if i.get("ready")]
        self.assertEqual(len(ready), 1, "one instance, started by the first call: the lease's (%r)" % lost)
        name = ready[0]
        proc = c.local.procs[int(name.rsplit("-", 1)[1])]  # procs[0] is the manager
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        sent, fell = c.direct_stats()
        self.assertEqual(c.call(lib, "add", [5, 5], timeout=WAIT), 10)
        self.assertEqual(c.direct_stats(), (sent + 1, fell + 1), "sent on the lease, then through the manager")


def free_port():
    """free_port returns a TCP port of 127.0.0.1 that was free a moment ago."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TLSTest(unittest.TestCase):
    """A cluster whose manager has TLS (--tls auto), reached with tls_ca."""

    def test_tls_cluster(self):
        d = tempfile.mkdtemp(prefix="trellis-pytls-")
        self.addCleanup(shutil.rmtree, d, True)
        secret_file = os.path.join(d, "secret")
        with open(secret_file, "w") as f:
            f.write("tls-test-secret-0123456789\n")
        addr = "127.0.0.1:%d" % free_port()
        procs = []

        def spawn(*args):
            log = open(os.path.join(d, "%d.log" % len(procs)), "wb")
            p = subprocess.Popen([BINARY] + list(args), stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            log.close()
            procs.append(p)

        def stop():
            for p in reversed(procs):
                p.kill()
                p.wait()
        self.addCleanup(stop)
        spawn("manager", "--listen", addr, "--secret-file", secret_file, "--store", os.path.join(d, "store"), "--tls", "auto",
              "--log-level", "warn")
        ca = os.path.join(d, "trellis-tls", "ca.pem")
        poll("the manager's CA", lambda: os.path.exists(ca))
        for i in (1, 2):
            spawn("worker", addr, "--secret-file", secret_file, "--tls-ca", ca, "--cores", "2", "--name", "tls-%d" % i,
                  "--workdir", os.path.join(d, "w%d" % i), "--log-level", "warn")

        def dial():
            try:
                return trellis.connect(addr, secret_file, tls_ca=ca, direct_calls=True)
            except trellis.ManagerUnreachable:
                return None
        c = poll("the manager to answer over TLS", dial)
        self.addCleanup(c.close)
        poll("two workers", lambda: len(c.status().get("workers", ())) == 2)
        # A task with a file up to the manager and one back from it: the
        # file store over TLS.
        local = os.path.join(d, "in.bin")
        data = bytes(range(256)) * 1000
        with open(local, "wb") as f:
            f.write(data)
        out = os.path.join(d, "out.bin")
        t = trellis.Task("cat in.bin in.bin > out.bin").add_input(trellis.LocalFile(local), "in.bin") \
            .add_output(trellis.Output(out), "out.bin")
        self.assertTrue(c.submit(t)[0].result(WAIT).ok)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), data + data)
        # Calls, through the manager and then straight to a worker's file
        # server, which speaks TLS only in such a cluster.
        lib = trellis.Library.from_functions(pyfuncs.add, name="tlsadd", slots=2)
        c.install(lib)
        self.assertEqual(c.call_async(lib, "add", [1, 2]).result(WAIT), 3)
        poll("a call to go direct", lambda: c.call(lib, "add", [1, 2], timeout=WAIT) == 3 and c.direct_stats()[0] > c.direct_stats()[1])
        sent, fell = c.direct_stats()
        self.assertEqual(c.call(lib, "add", [20, 22], timeout=WAIT), 42)
        self.assertEqual(c.direct_stats(), (sent + 1, fell))
        # Plain HTTP to a manager with TLS, and a CA that did not sign its
        # certificate, are refused with the reason.
        with self.assertRaises(trellis.InvalidError) as cm:
            trellis.connect(addr, secret_file)
        self.assertIn("the manager speaks TLS: connect with tls_ca=", str(cm.exception))
        roots = "/etc/ssl/certs/ca-certificates.crt"
        if os.path.exists(roots):
            with self.assertRaises(trellis.ManagerUnreachable) as cm:
                trellis.connect(addr, secret_file, tls_ca=roots)
            self.assertIn("certificate verify failed", str(cm.exception))
        with self.assertRaises(trellis.InvalidError) as cm:
            trellis.connect(addr, secret_file, tls_ca=os.path.join(d, "no-such-ca.pem"))
        self.assertIn("no-such-ca.pem", str(cm.exception))
        # The CA pinned by its fingerprint instead of its file, as the Go
        # clients' --tls-fingerprint: the manager's RPCs and a direct call.
        with open(ca) as f:
            fp = "sha256:" + hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()
        pc = trellis.connect(addr, secret_file, tls_fingerprint=fp, direct_calls=True)
        self.addCleanup(pc.close)
        self.assertEqual(len(pc.status().get("workers", ())), 2)
        poll("a call to go direct with the pinned CA",
             lambda: pc.call(lib, "add", [2, 3], timeout=WAIT) == 5 and pc.direct_stats()[0] > pc.direct_stats()[1])
        with self.assertRaises(trellis.InvalidError) as cm:
            trellis.connect(addr, secret_file, tls_fingerprint="sha256:" + "00" * 32)
        self.assertIn("no certificate it sends has the fingerprint pinned", str(cm.exception))
        with self.assertRaises(trellis.InvalidError) as cm:
            trellis.connect(addr, secret_file, tls_fingerprint="sha256:12ab")
        self.assertIn("want sha256: and 64 hex digits", str(cm.exception))
        with self.assertRaises(trellis.InvalidError) as cm:
            trellis.connect(addr, secret_file, tls_ca=ca, tls_fingerprint=fp)
        self.assertIn("not both", str(cm.exception))


class KillTest(unittest.TestCase):
    def test_worker_killed_task_retried(self):
        c = trellis.local(workers=2, binary=BINARY, cores=2)
        self.addCleanup(c.close)
        f = c.submit(trellis.Task("sleep 1; echo survived", retries=2))[0]
        worker = poll("the task to run", lambda: running(c).get(f.task_id))
        proc = c.local.procs[int(worker.rsplit("-", 1)[1])]  # procs[0] is the manager
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        r = f.result(WAIT)
        self.assertEqual((r.stdout, r.attempts >= 2), (b"survived\n", True))
        self.assertNotEqual(r.worker, worker)

    def test_restarted_manager_fails_waiting_futures(self):
        # The manager is killed and another started on its address: the
        # client's resumed Watch sees another run ID, and the task the new
        # manager never heard of ends its wait with ManagerLost.
        c = trellis.local(workers=1, binary=BINARY)
        self.addCleanup(c.close)
        f = c.submit(trellis.Task("sleep 60"))[0]
        poll("the task to run", lambda: f.task_id in running(c))
        lc = c.local
        lc.procs[0].send_signal(signal.SIGKILL)
        lc.procs[0].wait()
        args = [lc.binary, "manager", "--listen", c.addr, "--secret-file", lc.secret_file, "--log-level", "warn"]
        lc.procs[0] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        with self.assertRaises(trellis.ManagerLost) as cm:
            f.result(WAIT)
        self.assertIn("restarted", str(cm.exception))
        # The client goes on with the new manager.
        self.assertEqual(c.submit(trellis.Task("echo again"))[0].result(WAIT).stdout, b"again\n")


class FromFunctionsTest(unittest.TestCase):
    def test_closures_refused_by_name(self):
        def inner(x):
            return x
        with self.assertRaises(trellis.InvalidError) as cm:
            trellis.Library.from_functions(inner)
        self.assertIn("inner", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
