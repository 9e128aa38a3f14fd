"""python3 -m trellis.bench: the Python client's figures, beside the Go
client's from the trellis binary in the same run, as one JSON object on the
last line.

- tasks_per_s: trivial command tasks (true) through a local cluster; go_tasks_per_s:
  `trellis bench tasks` (the Go client, in process with its embedded cluster).
- calls_per_s: async calls; p50_us, p99_us: blocking calls one after the other; both
  of the library that `trellis bench calls` calls (the binary's echo, 0.5 cores, 8 slots),
  so that go_calls_per_s and go_p50_us, its "manager_*" figures (client and workers over
  127.0.0.1, every call through the manager, as here), differ from them by the client alone.
- py_lib_calls_per_s, py_lib_p50_us: the same with a no-op Python function
  (from_module, same cores and slots), what a Python user's own library reaches.
- direct_p50_us, direct_p99_us (py_lib_direct_*): the blocking calls again from a client
  with direct_calls=True, straight to the workers on a lease; go_direct_p50_us: the Go
  client's ("network_p50_us" of `trellis bench calls`).
- dask_tasks_per_s: a dask.array graph of about --dask-tasks tasks (when dask is there).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import trellis
from trellis.local import find_binary


def go_figures(binary, args):
    """go_figures runs `trellis bench ARGS` and returns its JSON line."""
    out = subprocess.run([binary, "bench"] + args + ["--log-level", "error"], capture_output=True, check=True, timeout=600)
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m trellis.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", help="the trellis binary (default: $TRELLIS_BIN, then PATH)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--blocking", type=int, default=1000, help="blocking calls for the latency figures")
    p.add_argument("--dask-tasks", type=int, default=10000)
    p.add_argument("--no-go", action="store_true", help="skip the Go client's figures")
    a = p.parse_args(argv)
    binary = find_binary(a.binary)
    res = {"bench": "python", "workers": a.workers, "tasks": a.tasks, "calls": a.calls}

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    if not a.no_go:
        log("go: trellis bench tasks")
        g = go_figures(binary, ["tasks", "--tasks", str(a.tasks), "--workers", str(a.workers)])
        res["go_tasks_per_s"] = g["tasks_per_s"]
        log("go: trellis bench calls")
        g = go_figures(binary, ["calls", "--calls", str(a.calls), "--workers", str(a.workers)])
        # Through the manager, as the Python client's calls go (network_*
        # is the Go client's direct route, which Python does not have).
        res["go_calls_per_s"] = g.get("manager_calls_per_s", g["network_calls_per_s"])
        res["go_p50_us"] = g.get("manager_p50_us", g["network_p50_us"])
        res["go_direct_p50_us"] = g["network_p50_us"]

    def blocking(c, lib, fn, args, raw, prefix):
        lat = []
        for _ in range(a.blocking):
            t0 = time.perf_counter()
            c.call(lib, fn, args, raw=raw)
            lat.append(time.perf_counter() - t0)
        lat.sort()
        res[prefix + "p50_us"] = round(lat[len(lat) // 2] * 1e6)
        res[prefix + "p99_us"] = round(lat[min(len(lat) - 1, len(lat) * 99 // 100)] * 1e6)

    with trellis.local(workers=a.workers, binary=binary) as c:
        log("python: %d tasks" % a.tasks)
        start = time.perf_counter()
        for f in c.submit([trellis.Task("true") for _ in range(a.tasks)]):
            f.result()
        res["tasks_per_s"] = a.tasks / (time.perf_counter() - start)

        here = os.path.dirname(os.path.abspath(__file__))
        go_lib = trellis.Library("bench-go", binary + " __bench-library", cores=0.5, slots=8)
        py_lib = trellis.Library.from_module(os.path.join(here, "_bench_lib.py"), "bench-noop", cores=0.5, slots=8,
                                             python=sys.executable)
        for lib, fn, args, raw, prefix in ((go_lib, "echo", b"1", True, ""), (py_lib, "noop", [], False, "py_lib_")):
            c.install(lib)
            for f in c.submit([trellis.Call(lib.name, fn, args, raw=raw) for _ in range(1000)]):
                f.result()  # warm: every instance the burst will use is up
            log("python: %d async calls of %s" % (a.calls, lib.name))
            start = time.perf_counter()
            for f in c.submit([trellis.Call(lib.name, fn, args, raw=raw) for _ in range(a.calls)]):
                f.result()
            res[prefix + "calls_per_s"] = a.calls / (time.perf_counter() - start)
            log("python: %d blocking calls of %s" % (a.blocking, lib.name))
            blocking(c, lib, fn, args, raw, prefix)
            log("python: %d blocking direct calls of %s" % (a.blocking, lib.name))
            with trellis.connect(c.addr, c.local.secret_file, direct_calls=True) as d:
                deadline = time.monotonic() + 30
                while d.direct_stats()[0] <= d.direct_stats()[1]:  # a lease is lent on a ready instance
                    if time.monotonic() > deadline:
                        raise RuntimeError("no call of %s went direct within 30 s" % lib.name)
                    d.call(lib, fn, args, raw=raw)
                sent, fell = d.direct_stats()
                blocking(d, lib, fn, args, raw, prefix + "direct_")
                sent2, fell2 = d.direct_stats()
                if (sent2 - sent, fell2 - fell) != (a.blocking, 0):
                    raise RuntimeError("%d of %d blocking calls of %s went direct" % (sent2 - sent - (fell2 - fell), a.blocking, lib.name))

        try:
            import dask.array as da
        except ImportError as e:
            res["dask"] = "skipped: %s" % e
        else:
            # ones, +1 and the sum's first stage per chunk, then the sum's tree.
            chunks = max(1, a.dask_tasks // 3)
            x = (da.ones(chunks * 10, chunks=10) + 1).sum()
            n = len(dict(x.__dask_graph__()))
            log("python: a dask.array graph of %d tasks" % n)
            start = time.perf_counter()
            v = x.compute(scheduler=c.dask_get)
            res["dask_tasks"] = n
            res["dask_tasks_per_s"] = n / (time.perf_counter() - start)
            assert v == chunks * 20, v
    if "go_tasks_per_s" in res:
        res["tasks_vs_go"] = res["tasks_per_s"] / res["go_tasks_per_s"]
        res["calls_vs_go"] = res["calls_per_s"] / res["go_calls_per_s"]
        res["p50_vs_go"] = res["go_p50_us"] / res["p50_us"]  # over 1: faster than Go's
    print(json.dumps(res))


if __name__ == "__main__":
    main()
