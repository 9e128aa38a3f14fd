"""Tests of trellis_library: they run testdata/testlib.py and examples/mathlib.py as a
worker would (docs/library-protocol.md) and speak the protocol to them.

    python3 -m unittest discover -s sdk/python
"""

import json
import os
import queue
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import trellis_library as tl

HERE = os.path.dirname(os.path.abspath(__file__))
TESTLIB = os.path.join(HERE, "testdata", "testlib.py")
MATHLIB = os.path.join(HERE, "examples", "mathlib.py")
PREFIX = struct.Struct(">II")
WAIT = 10.0  # the longest any single frame may take to come back


def frame(header, body=b""):
    hb = header if isinstance(header, bytes) else json.dumps(header).encode()
    return PREFIX.pack(len(hb), len(body)) + hb + body


class Lib:
    """Lib runs a library process and speaks the worker's side of the protocol."""

    def __init__(self, mode="direct", slots=1, script=TESTLIB, env=None, reader=True):
        e = dict(os.environ)
        e.update(
            PYTHONPATH=HERE,
            TRELLIS_LIBRARY_PROTOCOL="1",
            TRELLIS_LIBRARY_NAME="testlib",
            TRELLIS_LIBRARY_SLOTS=str(slots),
            TRELLIS_LIBRARY_MODE=mode,
        )
        e.update(env or {})
        self.stderr_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
            env=e,
            start_new_session=True,
        )
        self.frames = queue.Queue()
        self.logs = []
        self.handshake = None
        self.next_id = 1
        self.ended = threading.Event()
        if reader:
            self.handshake = self.proc.stdout.readline()
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        out = self.proc.stdout
        try:
            while True:
                pre = out.read(8)
                if len(pre) < 8:
                    self.frames.put(("eof", pre))
                    return
                hl, bl = PREFIX.unpack(pre)
                h = json.loads(out.read(hl))
                self.frames.put((h, out.read(bl)))
        except Exception as e:  # closed during tear-down
            self.frames.put(("eof", repr(e)))

    def send(self, header, body=b""):
        self.proc.stdin.write(frame(header, body))
        self.proc.stdin.flush()

    def call(self, fn, args=None, body=None, timeout_ms=0, cid=None):
        """call sends a call and returns its id (JSON args unless body is given)."""
        if cid is None:
            cid = self.next_id
            self.next_id += 1
        if body is None:
            body = b"" if args is None else json.dumps(args).encode()
        self.send({"type": "call", "id": cid, "fn": fn, "timeout_ms": timeout_ms}, body)
        return cid

    def cancel(self, cid):
        self.send({"type": "cancel", "id": cid})

    def recv(self, timeout=WAIT):
        """recv returns the next result frame (header, body), keeping log frames in logs."""
        while True:
            try:
                h, body = self.frames.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError("no frame within %.1f s; stderr:\n%s" % (timeout, self.stderr())) from None
            if h == "eof":
                raise AssertionError("library closed stdout (%r); stderr:\n%s" % (body, self.stderr()))
            if h.get("type") == "log":
                self.logs.append(h["msg"])
                continue
            return h, body

    def result(self, cid, timeout=WAIT):
        h, body = self.recv(timeout)
        if h.get("id") != cid:
            raise AssertionError("got result for id %r, want %r: %r" % (h.get("id"), cid, h))
        return h, body

    def value(self, fn, args=None, timeout_ms=0):
        """value calls fn and returns its decoded result, failing on an error."""
        h, body = self.result(self.call(fn, args, timeout_ms=timeout_ms))
        if not h.get("ok"):
            raise AssertionError("%s(%r) failed: %s\n%s" % (fn, args, h.get("error"), h.get("traceback", "")))
        return json.loads(body) if body else None

    def close_stdin(self):
        self.proc.stdin.close()

    def wait(self, timeout=WAIT):
        return self.proc.wait(timeout)

    def stderr(self):
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except Exception:
                pass
        self.stderr_file.close()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_gone(pid, within=2.0, zombie_ok=False):
    """pid_gone polls until pid no longer exists (or, with zombie_ok, is a zombie: dead
    but not reaped yet, as an orphan waiting for init)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if zombie_ok:
            try:
                with open("/proc/%d/stat" % pid) as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        return True
            except OSError:
                return True
        time.sleep(0.01)
    return False


class LibTestCase(unittest.TestCase):
    def start(self, *args, **kwargs):
        lib = Lib(*args, **kwargs)
        self.addCleanup(lib.kill)
        return lib


class TestAPI(unittest.TestCase):
    def test_registration_forms(self):
        lib = tl.Library("x")

        @lib.function
        def a(args):
            return args

        @lib.function("b.v2")
        def b(args, state):
            return state

        @lib.function(raw=True)
        def c(body):
            return body

        @lib.function("d", raw=True)
        def d(body, state=None):
            return state

        @lib.function(name="e")
        def e():
            return 5

        self.assertEqual(lib.functions, ["a", "b.v2", "c", "d", "e"])
        self.assertEqual(lib.handshake_line(), "TRELLIS-LIBRARY|1|x|a,b.v2,c,d,e\n")
        f = lib._functions
        self.assertEqual(f["a"].invoke(1, "s"), 1)
        self.assertEqual(f["b.v2"].invoke(1, "s"), "s")
        self.assertTrue(f["c"].raw)
        self.assertEqual(f["d"].invoke(b"", "s"), "s")
        self.assertEqual(f["e"].invoke(1, "s"), 5)

    def test_bad_names(self):
        for name in ["", "a|b", "a\nb"]:
            with self.assertRaises(ValueError, msg=repr(name)):
                tl.Library(name)
        lib = tl.Library("x")
        for name in ["a b", "a,b", "é", ""]:
            with self.assertRaises(ValueError, msg=repr(name)):
                lib.function(name)(lambda: 0)
        lib.function("f")(lambda: 0)
        with self.assertRaises(ValueError):
            lib.function("f")(lambda: 0)

    def test_outside_a_call(self):
        self.assertFalse(tl.cancelled())
        self.assertIsNone(tl.current_call_id())


class TestDirect(LibTestCase):
    def test_handshake_and_calls(self):
        lib = self.start()
        self.assertEqual(
            lib.handshake,
            b"TRELLIS-LIBRARY|1|testlib|add,noop,echo,echo_raw,strlen,sleep,pid,bump,fail,"
            b"log_and_sleep,until_cancelled,crash,kill_self,huge_error,huge_log,not_json,printer,where,godebug\n",
        )
        self.assertEqual(lib.value("add", [1, 2]), 3)
        self.assertIsNone(lib.value("noop"))
        self.assertEqual(lib.value("echo", {"ü": ["ß", 1.5, None]}), {"ü": ["ß", 1.5, None]})
        self.assertEqual(lib.value("strlen", "abc"), 3)
        h, body = lib.result(lib.call("echo_raw", body=b"\x00\xff raw"))
        self.assertEqual((h["ok"], body), (True, b"\x00\xff raw"))
        self.assertEqual(lib.value("pid"), lib.proc.pid)

    def test_call_dir(self):
        lib = self.start()
        self.assertIsNone(lib.value("where"))
        cid = lib.next_id
        lib.next_id += 1
        lib.send({"type": "call", "id": cid, "fn": "where", "timeout_ms": 0, "dir": "/calls/t1.a1"}, b"")
        h, body = lib.result(cid)
        self.assertEqual((h["ok"], json.loads(body)), (True, "/calls/t1.a1"))

    def test_godebug_restored_for_children(self):
        # The worker starts a library with the Go runtime monitor's setting added to
        # GODEBUG and the library's own value saved: the library's children see the saved value.
        setting = "schedtrace=2147483647"
        for env, want in [
            ({"GODEBUG": setting, "TRELLIS_SYSMON_GODEBUG": ""}, None),
            ({"GODEBUG": setting + ",gctrace=1", "TRELLIS_SYSMON_GODEBUG": "=gctrace=1"}, "gctrace=1"),
            ({"GODEBUG": "gctrace=1"}, "gctrace=1"),
        ]:
            lib = self.start(env=env)
            self.assertEqual(lib.value("godebug"), want, env)

    def test_print_and_subprocess_output_go_to_stderr(self):
        lib = self.start()
        self.assertEqual(lib.value("printer", "hello from print"), "printed")
        self.assertEqual(lib.value("add", [2, 2]), 4)  # the frames are intact
        lib.close_stdin()
        self.assertEqual(lib.wait(), 0)
        err = lib.stderr()
        for want in ["this print must go to stderr", "hello from print", "subprocess output"]:
            self.assertIn(want, err)

    def test_errors(self):
        lib = self.start()
        h, body = lib.result(lib.call("fail", 7))
        self.assertEqual((h["ok"], h["error"], body), (False, "ValueError: bad value 7", b""))
        tb = h["traceback"]
        self.assertTrue(tb.startswith("Traceback (most recent call last):"), tb)
        self.assertIn("in _inner", tb)
        self.assertIn("ValueError: bad value 7", tb)
        self.assertNotIn("trellis_library.py", tb)

        h, _ = lib.result(lib.call("nope"))
        self.assertFalse(h["ok"])
        self.assertIn("unknown function 'nope'", h["error"])

        h, _ = lib.result(lib.call("not_json"))
        self.assertEqual(h["error"], "TypeError: result of not_json is not JSON-serializable: "
                                     "Object of type set is not JSON serializable")

        h, _ = lib.result(lib.call("add", body=b"[1,"))
        self.assertTrue(h["error"].startswith("ArgumentError: arguments are not JSON"), h)
        h, _ = lib.result(lib.call("echo", body=b"[" * 100_000 + b"]" * 100_000))
        self.assertTrue(h["error"].startswith("ArgumentError: arguments are not JSON: RecursionError"), h)
        h, _ = lib.result(lib.call("add", [1]))
        self.assertEqual(h["error"], "IndexError: list index out of range")
        self.assertEqual(lib.value("add", [1, 1]), 2)  # still serving

    def test_large_ids_and_long_texts(self):
        lib = self.start()
        big = (1 << 64) - 1
        h, body = lib.result(lib.call("add", [1, 2], cid=big))
        self.assertEqual((h["id"], body), (big, b"3"))
        # a 200,000-character message: the header still fits in 64 KiB
        h, _ = lib.result(lib.call("huge_error", 200_000))
        self.assertTrue(h["error"].startswith("ValueError: éééé"), h["error"][:40])
        self.assertIn("characters left out", h["error"])
        self.assertLessEqual(len(json.dumps(h).encode()), tl.MAX_HEADER)
        self.assertEqual(lib.value("huge_log", 1_000_000), 1_000_000)
        self.assertLess(len(lib.logs[-1]), tl.MAX_HEADER)

    def test_concurrent_calls_overlap(self):
        lib = self.start(slots=4)
        t0 = time.monotonic()
        ids = [lib.call("sleep", 0.4) for _ in range(4)]
        got = sorted(lib.recv()[0]["id"] for _ in ids)
        elapsed = time.monotonic() - t0
        self.assertEqual(got, ids)
        self.assertLess(elapsed, 0.4 * 2, "4 calls of 0.4 s on 4 slots took %.2f s" % elapsed)

    def test_state_is_shared(self):
        lib = self.start()
        self.assertEqual([lib.value("bump") for _ in range(3)], [1, 2, 3])

    def test_cancel_pending_call(self):
        lib = self.start(slots=1)
        first = lib.call("sleep", 0.5)
        second = lib.call("sleep", 0.5)
        lib.cancel(second)
        h, _ = lib.recv()
        self.assertEqual((h["id"], h["ok"], h.get("cancelled"), h["error"]), (second, False, True, "cancelled"))
        h, _ = lib.recv()
        self.assertEqual((h["id"], h["ok"]), (first, True))

    def test_cancel_running_call_cooperatively(self):
        lib = self.start()
        cid = lib.call("until_cancelled", 10)
        time.sleep(0.1)  # let it start
        t0 = time.monotonic()
        lib.cancel(cid)
        h, _ = lib.result(cid)
        self.assertEqual((h["ok"], h.get("cancelled")), (False, True))
        self.assertLess(time.monotonic() - t0, 1.0)
        lib.cancel(cid)  # answered already: ignored
        lib.cancel(12345)  # never seen: ignored
        self.assertEqual(lib.value("add", [1, 2]), 3)

    def test_log(self):
        lib = self.start(script=MATHLIB)
        self.assertEqual(lib.value("sqrt", 4), 2.0)
        self.assertEqual(lib.logs, ["sqrt of 4"])


class TestExample(LibTestCase):
    def test_mathlib(self):
        for mode in ["direct", "fork"]:
            with self.subTest(mode=mode):
                lib = self.start(mode=mode, script=MATHLIB, slots=2)
                self.assertEqual(lib.handshake, b"TRELLIS-LIBRARY|1|mathlib|add,mul,stats,is_prime,sqrt\n")
                self.assertEqual(lib.value("mul", [6, 7]), 42)
                self.assertEqual(lib.value("stats", [1, 2, 3, 4]), {"n": 4, "mean": 2.5, "stdev": 1.118033988749895})
                self.assertIs(lib.value("is_prime", 7919), True)
                self.assertIs(lib.value("is_prime", 1_000_001), False)
                h, _ = lib.result(lib.call("sqrt", -1))
                self.assertEqual(h["error"], "ValueError: square root of a negative number: -1")


class TestFork(LibTestCase):
    def test_calls_run_in_children(self):
        lib = self.start(mode="fork", slots=2)
        self.assertEqual(lib.value("add", [1, 2]), 3)
        pids = {lib.value("pid") for _ in range(3)}
        self.assertEqual(len(pids), 3)
        self.assertNotIn(lib.proc.pid, pids)
        self.assertEqual([lib.value("bump") for _ in range(3)], [1, 1, 1])  # no state leaks
        h, _ = lib.result(lib.call("fail", "x"))
        self.assertEqual(h["error"], "ValueError: bad value 'x'")
        self.assertIn("in _inner", h["traceback"])

    def test_concurrent_calls_overlap(self):
        lib = self.start(mode="fork", slots=4)
        t0 = time.monotonic()
        ids = [lib.call("sleep", 0.4) for _ in range(4)]
        got = sorted(lib.recv()[0]["id"] for _ in ids)
        elapsed = time.monotonic() - t0
        self.assertEqual(got, ids)
        self.assertLess(elapsed, 0.4 * 2, "4 calls of 0.4 s on 4 slots took %.2f s" % elapsed)

    def test_cancel_kills_child(self):
        lib = self.start(mode="fork", slots=2)
        cid = lib.call("log_and_sleep", 30)
        h, _ = lib.frames.get(timeout=WAIT)
        self.assertEqual(h["type"], "log")
        child = int(h["msg"].split()[1])
        self.assertNotEqual(child, lib.proc.pid)
        os.kill(child, 0)  # alive
        t0 = time.monotonic()
        lib.cancel(cid)
        h, body = lib.result(cid)
        self.assertEqual(h, {"type": "result", "id": cid, "ok": False, "cancelled": True, "error": "cancelled"})
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertTrue(pid_gone(child), "child %d still exists after cancel" % child)
        self.assertEqual(lib.value("add", [1, 2]), 3)

    def test_timeout_backstop(self):
        lib = self.start(mode="fork")
        t0 = time.monotonic()
        h, _ = lib.result(lib.call("sleep", 30, timeout_ms=300))
        elapsed = time.monotonic() - t0
        self.assertEqual((h["ok"], h["error"]), (False, "timed out after 300 ms"))
        self.assertTrue(0.25 < elapsed < 2.0, elapsed)
        self.assertEqual(lib.value("add", [2, 3], timeout_ms=5000), 5)

    def test_crash_fails_only_that_call(self):
        lib = self.start(mode="fork")
        h, _ = lib.result(lib.call("crash", 3))
        self.assertEqual(h["error"], "call process exited with status 3 without a result")
        self.assertEqual(lib.value("add", [1, 2]), 3)

    def test_child_killed_by_a_signal(self):
        lib = self.start(mode="fork")
        h, _ = lib.result(lib.call("kill_self", "SIGSEGV"))
        self.assertEqual(h["error"], "call process killed by SIGSEGV without a result")
        self.assertEqual(lib.value("add", [1, 2]), 3)

    def test_cancel_pending_call(self):
        lib = self.start(mode="fork", slots=1)
        first = lib.call("sleep", 0.5)
        second = lib.call("sleep", 0.5)
        lib.cancel(second)
        h, _ = lib.recv()
        self.assertEqual((h["id"], h.get("cancelled")), (second, True))
        h, _ = lib.recv()
        self.assertEqual((h["id"], h["ok"]), (first, True))

    def test_cancelled_is_false_in_child(self):
        lib = self.start(mode="fork")
        self.assertEqual(lib.value("until_cancelled", 0.05), "not cancelled")


class TestSetup(LibTestCase):
    def test_setup_runs_once(self):
        for mode in ["direct", "fork"]:
            with self.subTest(mode=mode):
                counter = os.path.join(tempfile.mkdtemp(), "count")
                self.addCleanup(os.unlink, counter)
                lib = self.start(mode=mode, slots=2, env={"TESTLIB_COUNTER": counter})
                for i in range(5):
                    self.assertEqual(lib.value("add", [i, 1]), i + 1)
                lib.close_stdin()
                self.assertEqual(lib.wait(), 0)
                with open(counter) as f:
                    self.assertEqual(f.read(), "1")

    def test_setup_failure(self):
        lib = self.start(env={"TESTLIB_SETUP_FAIL": "1"}, reader=False)
        out, _ = lib.proc.communicate(timeout=WAIT)
        self.assertEqual(lib.proc.returncode, 1)
        self.assertEqual(out, b"")  # no handshake
        err = lib.stderr()
        self.assertIn("Traceback (most recent call last):", err)
        self.assertIn("RuntimeError: set-up failed on purpose", err)


class TestLarge(LibTestCase):
    def test_20mb_round_trip(self):
        data = os.urandom(20 << 20)
        text = "x" * (20 << 20)
        for mode in ["direct", "fork"]:
            with self.subTest(mode=mode):
                lib = self.start(mode=mode)
                t0 = time.monotonic()
                h, body = lib.result(lib.call("echo_raw", body=data))
                raw_s = time.monotonic() - t0
                self.assertTrue(h["ok"], h)
                self.assertEqual(body, data)
                msg = "\n  20 MiB round trip, %s mode: raw %.3f s" % (mode, raw_s)
                if mode == "direct":
                    t0 = time.monotonic()
                    self.assertEqual(lib.value("echo", text), text)
                    msg += ", JSON string %.3f s (both sides' JSON coding included)" % (time.monotonic() - t0)
                print(msg, file=sys.stderr)

    def test_many_results_of_mixed_sizes(self):
        # Frames written together (group commit, writev, short writes) stay whole and in order.
        sizes = [0, 1, 100, 70_000, 300_000, 5, 1 << 20] * 15
        for mode, n in [("direct", len(sizes)), ("fork", 14)]:
            with self.subTest(mode=mode):
                lib = self.start(mode=mode, slots=4)
                bodies = {}
                for size in sizes[:n]:
                    body = os.urandom(size)
                    bodies[lib.call("echo_raw", body=body)] = body
                for _ in range(n):
                    h, body = lib.recv()
                    self.assertTrue(h["ok"], h)
                    self.assertEqual(body, bodies.pop(h["id"]))
                self.assertEqual(bodies, {})

    def test_body_over_limit_is_a_protocol_error(self):
        lib = self.start(reader=False)
        lib.proc.stdout.readline()
        lib.proc.stdin.write(PREFIX.pack(10, tl.MAX_BODY + 1))
        lib.proc.stdin.flush()
        self.assertEqual(lib.wait(), 2)
        self.assertIn("body length", lib.stderr())


class TestStop(LibTestCase):
    def test_end_of_stdin_exits_0(self):
        lib = self.start()
        self.assertEqual(lib.value("add", [1, 2]), 3)
        t0 = time.monotonic()
        lib.close_stdin()
        self.assertEqual(lib.wait(), 0)
        self.assertLess(time.monotonic() - t0, 1.0)

    def test_running_call_finishes(self):
        for mode in ["direct", "fork"]:
            with self.subTest(mode=mode):
                lib = self.start(mode=mode)
                cid = lib.call("sleep", 0.3)
                lib.close_stdin()
                h, _ = lib.result(cid)
                self.assertTrue(h["ok"], h)
                self.assertEqual(lib.wait(), 0)

    def test_stuck_call_is_abandoned(self):
        for mode in ["direct", "fork"]:
            with self.subTest(mode=mode):
                lib = self.start(mode=mode, env={"TESTLIB_STOP_GRACE": "0.3"})
                lib.call("log_and_sleep", 30)
                h, _ = lib.frames.get(timeout=WAIT)  # the call is running
                t0 = time.monotonic()
                lib.close_stdin()
                self.assertEqual(lib.wait(), 0)
                self.assertLess(time.monotonic() - t0, 1.5)
                if mode == "fork":
                    self.assertTrue(pid_gone(int(h["msg"].split()[1]), zombie_ok=True))


class TestMalformed(LibTestCase):
    CASES = [
        ("header too long", PREFIX.pack(tl.MAX_HEADER + 1, 0), "header length"),
        ("header not JSON", frame(b"{nope"), "header is not JSON"),
        ("header not an object", frame(b"[1,2]"), "not a JSON object"),
        ("header nested too deep", frame(b"[" * 30_000 + b"]" * 30_000), "header is not JSON"),
        ("header not UTF-8", frame(b'{"type":"\xff"}'), "header is not JSON"),
        ("ends in prefix", b"\x00\x00\x00", "inside a frame prefix"),
        ("ends in header", PREFIX.pack(50, 0) + b'{"type"', "inside a header"),
        ("ends in body", frame({"type": "call", "id": 1, "fn": "add"}, b"[1,2]")[:-2], "inside a body"),
        ("bad id", frame({"type": "call", "id": "1", "fn": "add"}, b"[1,2]"), "bad call id"),
        ("negative id", frame({"type": "call", "id": -1, "fn": "add"}, b"[1,2]"), "bad call id"),
        ("fn missing", frame({"type": "call", "id": 1}, b"[1,2]"), "fn is not a string"),
        ("bad timeout", frame({"type": "call", "id": 1, "fn": "add", "timeout_ms": "5"}), "bad timeout_ms"),
        ("cancel without id", frame({"type": "cancel"}), "bad call id"),
        (
            "duplicate id",
            frame({"type": "call", "id": 1, "fn": "sleep"}, b"1") + frame({"type": "call", "id": 1, "fn": "add"}),
            "already running",
        ),
    ]

    def test_malformed_input(self):
        for name, data, want in self.CASES:
            with self.subTest(name):
                lib = self.start(reader=False)
                self.assertTrue(lib.proc.stdout.readline().startswith(b"TRELLIS-LIBRARY|1|"))
                lib.proc.stdin.write(data)
                lib.proc.stdin.close()
                self.assertEqual(lib.wait(), 2)
                err = lib.stderr()
                self.assertIn("malformed frame from worker", err)
                self.assertIn(want, err)

    def test_unknown_frame_type_is_ignored(self):
        lib = self.start()
        lib.send({"type": "ping", "extra": 1})
        lib.send({"type": ["odd"]})
        lib.send({"type": "call", "id": 5, "fn": "add", "timeout_ms": 0, "future_field": True}, b"[2,2]")
        h, body = lib.result(5)
        self.assertEqual(body, b"4")

    def test_bad_configuration(self):
        for env, want in [
            ({"TRELLIS_LIBRARY_MODE": "threads"}, "want direct or fork"),
            ({"TRELLIS_LIBRARY_SLOTS": "many"}, "not an integer"),
            ({"TRELLIS_LIBRARY_SLOTS": "0"}, "want 1 to 4096"),
            ({"TRELLIS_LIBRARY_PROTOCOL": "2"}, "speaks protocol '2'"),
        ]:
            with self.subTest(env=env):
                lib = self.start(env=env, reader=False)
                out, _ = lib.proc.communicate(timeout=WAIT)
                self.assertEqual((lib.proc.returncode, out), (2, b""))
                self.assertIn(want, lib.stderr())


class TestThroughput(LibTestCase):
    N = 5000

    def run_calls(self, mode, slots, window, n):
        """run_calls keeps `window` trivial calls in flight until n are answered; it returns
        calls/s and the library's CPU seconds per call."""
        lib = self.start(mode=mode, slots=slots, reader=False)
        self.assertTrue(lib.proc.stdout.readline().startswith(b"TRELLIS-LIBRARY|1|"))
        out, inp = lib.proc.stdout, lib.proc.stdin
        frames = [frame(b'{"type":"call","id":%d,"fn":"noop","timeout_ms":0}' % i) for i in range(1, n + 1)]
        cpu0 = cpu_seconds(lib.proc.pid)
        t0 = time.perf_counter()
        sent = min(window, n)
        inp.write(b"".join(frames[:sent]))
        inp.flush()
        ids = set()
        for _ in range(n):
            hl, bl = PREFIX.unpack(out.read(8))
            h = json.loads(out.read(hl + bl)[:hl])
            self.assertTrue(h["ok"], h)
            ids.add(h["id"])
            if sent < n:
                inp.write(frames[sent])
                inp.flush()
                sent += 1
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(lib.proc.pid) - cpu0
        self.assertEqual(len(ids), n)
        lib.close_stdin()
        self.assertEqual(lib.wait(), 0)
        return n / elapsed, cpu / n

    def test_throughput(self):
        rate, cpu = self.run_calls("direct", 4, 4, self.N)
        prate, pcpu = self.run_calls("direct", 4, self.N, self.N)
        rate1, cpu1 = self.run_calls("direct", 1, 1, 2000)
        frate, fcpu = self.run_calls("fork", 4, 4, 40)
        print(
            "\n  python_calls_per_s: %.0f (%d trivial calls, direct mode, slots=4, 4 in flight; "
            "library CPU %.0f us/call)"
            "\n  all %d sent at once, slots=4: %.0f calls/s (library CPU %.0f us/call)"
            "\n  one call at a time, slots=1: %.0f calls/s, %.0f us round trip (library CPU %.0f us/call)"
            "\n  fork mode, slots=4, 4 in flight: %.0f calls/s (library CPU %.0f us/call, children not counted)"
            % (rate, self.N, cpu * 1e6, self.N, prate, pcpu * 1e6, rate1, 1e6 / rate1, cpu1 * 1e6,
               frate, fcpu * 1e6),
            file=sys.stderr,
        )
        self.assertGreater(rate, 1000)


if __name__ == "__main__":
    unittest.main()
