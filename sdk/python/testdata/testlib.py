"""testlib: the library the SDK's tests run. Environment knobs:

TESTLIB_COUNTER  file whose integer the set-up step increments (to count set-ups)
TESTLIB_SETUP_FAIL  when set, the set-up step raises
TESTLIB_STOP_GRACE  Library.stop_grace, in seconds
"""

import os
import signal
import subprocess
import sys
import time

import trellis_library as tl

lib = tl.Library("testlib", stop_grace=float(os.environ.get("TESTLIB_STOP_GRACE", "2")))


@lib.setup
def setup():
    print("set-up: this print must go to stderr, not into the protocol")
    path = os.environ.get("TESTLIB_COUNTER")
    if path:
        n = int(open(path).read() or "0") if os.path.exists(path) else 0
        with open(path, "w") as f:
            f.write(str(n + 1))
    if os.environ.get("TESTLIB_SETUP_FAIL"):
        raise RuntimeError("set-up failed on purpose")
    return {"bumps": 0}


@lib.function
def add(args):
    return args[0] + args[1]


@lib.function
def noop():
    return None


@lib.function
def echo(args):
    return args


@lib.function(raw=True)
def echo_raw(body):
    return body


@lib.function("strlen")
def string_length(args):
    return len(args)


@lib.function
def sleep(seconds):
    time.sleep(seconds)
    return os.getpid()


@lib.function
def pid():
    return os.getpid()


@lib.function
def bump(args, state=None):
    state["bumps"] += 1
    return state["bumps"]


def _inner(x):
    raise ValueError("bad value %r" % x)


@lib.function
def fail(args):
    _inner(args)


@lib.function
def log_and_sleep(seconds):
    tl.log("pid %d" % os.getpid())
    time.sleep(seconds)
    return "slept"


@lib.function
def until_cancelled(limit):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if tl.cancelled():
            return "noticed"
        time.sleep(0.01)
    return "not cancelled"


@lib.function
def crash(status):
    sys.stderr.flush()
    os._exit(status)


@lib.function
def kill_self(signame):
    os.kill(os.getpid(), getattr(signal, signame))
    time.sleep(10)


@lib.function
def huge_error(n):
    raise ValueError("é" * n)


@lib.function
def huge_log(n):
    tl.log("x" * n)
    return n


@lib.function
def not_json():
    return {1, 2}


@lib.function
def printer(msg):
    print(msg)
    os.system("echo subprocess output")
    return "printed"


@lib.function
def where():
    return tl.call_dir()


@lib.function
def godebug():
    """godebug returns GODEBUG as a child process sees it (None where unset)."""
    out = subprocess.run(["sh", "-c", 'if [ "${GODEBUG+set}" ]; then printf %s "$GODEBUG"; else printf unset; fi'],
                         capture_output=True, text=True, check=True).stdout
    return None if out == "unset" else out


if __name__ == "__main__":
    lib.serve()
