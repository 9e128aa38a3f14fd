"""pipeline.py: the trellis ML example from the Python client.

    python3 examples/ml-python/pipeline.py [--workers 2] [--sweep 6] [--binary bin/trellis]

On a local cluster (trellis.local: a manager and --workers workers), it
prepares and shards the digits data (a command task), trains a sweep of
softmax-regression models (command tasks whose models are temp files that
stay on the workers), picks the best on a validation shard (a command task),
then installs a library whose set-up loads the test set and the best model
once per instance, and evaluates and predicts with many calls into it.
Standard library only; the model is digits_ml.py.

It prints a line per finished step and, as its last line, one JSON object:
{"accuracy": …, "tasks": …, "calls": …, "seconds": …, …}. It exits with
status 1 if the test accuracy is under --min-accuracy.
"""

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
try:
    import trellis
except ImportError:  # not installed: the client of this repository
    sys.path.insert(0, os.path.join(ROOT, "sdk", "python"))
    import trellis

import digits_ml  # noqa: E402


def parse(argv):
    p = argparse.ArgumentParser(prog="pipeline.py", description="the trellis ML example from Python")
    p.add_argument("--binary", default=os.environ.get("TRELLIS_BIN") or os.path.join(ROOT, "bin", "trellis"),
                   help="the trellis binary (default: $TRELLIS_BIN, else bin/trellis)")
    p.add_argument("--workers", type=int, default=2, help="local workers")
    p.add_argument("--cores", type=int, default=1, help="cores of each worker (one: the trains spread over the workers)")
    p.add_argument("--sweep", type=int, default=len(digits_ml.SWEEP), help="sweep points to train (1..%d)" % len(digits_ml.SWEEP))
    p.add_argument("--epochs", type=int, default=10, help="training epochs")
    p.add_argument("--limit", type=int, default=0, help="use only the first N rows of the data (0: all)")
    p.add_argument("--eval-batch", type=int, default=20, help="test images per evaluate call")
    p.add_argument("--predict-batch", type=int, default=10, help="test images per predict call")
    p.add_argument("--min-accuracy", type=float, default=0.90, help="fail if the test accuracy is lower")
    p.add_argument("--data", default=os.path.join(ROOT, "examples", "ml", "data", "digits.csv.gz"), help="digits CSV, gzipped")
    p.add_argument("--python", default=sys.executable, help="the Python the tasks and the library run with")
    a = p.parse_args(argv)
    if not 1 <= a.sweep <= len(digits_ml.SWEEP):
        p.error("--sweep %d: want 1..%d" % (a.sweep, len(digits_ml.SWEEP)))
    if a.workers < 1 or a.cores < 1 or a.eval_batch < 1 or a.predict_batch < 1 or a.epochs < 1:
        p.error("--workers, --cores, --epochs, --eval-batch and --predict-batch must be at least 1")
    return a


class Clock:
    """Clock times the stages of the run: each from its submission to its last result."""

    def __init__(self):
        self.start = time.monotonic()
        self.stages = {}  # name -> [submitted, finished, count, calls?]

    def submitted(self, name, count, calls=False):
        self.stages[name] = [time.monotonic(), None, count, calls]

    def done(self, name, note=""):
        st = self.stages[name]
        st[1] = time.monotonic()
        print("%-9s %3d %-5s %6.2fs  %s" % (name, st[2], "calls" if st[3] else "tasks", st[1] - st[0], note), flush=True)

    def seconds(self, name):
        st = self.stages[name]
        return round(st[1] - st[0], 3)


def result_json(fut, what):
    """result_json waits for a step's task and returns the JSON line it printed."""
    r = fut.result()
    try:
        return json.loads(r.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError("%s: no JSON line on stdout (got %r); stderr: %r" % (what, r.stdout[-200:], r.stderr[-500:]))


def run(a, out=sys.stdout):
    clock = Clock()
    py = a.python
    code = trellis.LocalFile(os.path.join(HERE, "digits_ml.py"))
    with trellis.local(workers=a.workers, binary=a.binary, cores=a.cores) as cluster:
        # 1. prep: the test set and four shards, temp files on the workers.
        test, shards = trellis.Temp(), [trellis.Temp() for _ in range(4)]
        prep = trellis.Task("%s digits_ml.py prep --data digits.csv.gz --out split --limit %d" % (py, a.limit), name="prep")
        prep.add_input(code, "digits_ml.py").add_input(trellis.LocalFile(a.data), "digits.csv.gz")
        prep.add_output(test, "split/test.csv")
        for i, s in enumerate(shards):
            prep.add_output(s, "split/train-%d.csv" % i)

        # 2. train: one task per sweep point on shards 0..2; the models stay temp files.
        models, trains = [], []
        for lr, l2 in digits_ml.SWEEP[:a.sweep]:
            m = trellis.Temp()
            t = trellis.Task("%s digits_ml.py train --lr %g --l2 %g --epochs %d --out model.json train-0.csv train-1.csv train-2.csv"
                             % (py, lr, l2, a.epochs), name="train-%g-%g" % (lr, l2), after=[prep])
            t.add_input(code, "digits_ml.py")
            for i in range(3):
                t.add_input(shards[i], "train-%d.csv" % i)
            t.add_output(m, "model.json")
            models.append(m)
            trains.append(t)

        # 3. pick: the best model on the validation shard (shard 3).
        best = trellis.Temp()
        pick = trellis.Task("%s digits_ml.py pick --validation validation.csv --out best.json model-*.json" % py,
                            name="pick", after=trains)
        pick.add_input(code, "digits_ml.py").add_input(shards[3], "validation.csv")
        for i, m in enumerate(models):
            pick.add_input(m, "model-%d.json" % i)
        pick.add_output(best, "best.json")

        futs = cluster.submit(prep, *trains, pick)
        clock.submitted("prep", 1)
        clock.submitted("train", len(trains))
        clock.submitted("pick", 1)

        # 4. The library, installed at once: its inputs are temp files that
        # prep and pick have yet to make; instances start once they exist.
        lib = trellis.Library.from_functions(digits_ml.evaluate, digits_ml.predict_batch, setup=digits_ml.setup,
                                             name="digits-py", python=py)
        lib.add_input(test, "test.csv").add_input(best, "best.json")
        cluster.install(lib)

        prepped = result_json(futs[0], "prep")
        clock.done("prep", "test rows %d, shards %s" % (prepped["test"], prepped["shards"]))
        n = prepped["test"]

        # 5. evaluate, submitted as soon as the test set's size is known: the
        # calls wait for the library, which waits for pick.
        clock.submitted("evaluate", (n + a.eval_batch - 1) // a.eval_batch, calls=True)
        evals = [cluster.call_async(lib, "evaluate", [s, a.eval_batch]) for s in range(0, n, a.eval_batch)]

        trained = [result_json(f, "train") for f in futs[1:-1]]
        clock.done("train", ", ".join("lr %g l2 %g %.2fs" % (t["lr"], t["l2"], t["seconds"]) for t in trained))
        picked = result_json(futs[-1], "pick")["best"]
        clock.done("pick", "lr %g l2 %g validation accuracy %.4f" % (picked["lr"], picked["l2"], picked["validation_accuracy"]))

        instances = {}
        correct = total = 0
        for f in evals:
            v = f.result()
            correct += v["correct"]
            total += v["total"]
            instances[v["instance"]] = v["setups"]
        clock.done("evaluate", "%d/%d correct" % (correct, total))

        # 6. predict, checked against the test labels fetched from the cluster.
        clock.submitted("predict", (n + a.predict_batch - 1) // a.predict_batch, calls=True)
        preds = [cluster.call_async(lib, "predict_batch", [s, a.predict_batch]) for s in range(0, n, a.predict_batch)]
        labels = []
        for f in preds:
            v = f.result()
            labels.extend(v["labels"])
            instances[v["instance"]] = v["setups"]
        with tempfile.TemporaryDirectory(prefix="trellis-ml-") as tmp:
            cluster.fetch(test, os.path.join(tmp, "test.csv"))
            truth = [y for _, y in digits_ml.read_rows(os.path.join(tmp, "test.csv"))]
        agree = sum(p == y for p, y in zip(labels, truth))
        if len(labels) != n or agree != correct:
            raise RuntimeError("predict gave %d labels, %d right; evaluate counted %d of %d" % (len(labels), agree, correct, n))
        clock.done("predict", "%d labels, %d right, as evaluate counted" % (len(labels), agree))
        workers = sorted({f.result().worker for f in futs})

    summary = {
        "accuracy": round(correct / total, 4) if total else 0.0,
        "tasks": len(futs),
        "calls": len(evals) + len(preds),
        "seconds": round(time.monotonic() - clock.start, 2),
        "correct": correct, "test_rows": total, "workers": a.workers,
        "task_workers": workers,
        "instances": len(instances), "setups": sum(instances.values()),
        "task_seconds": {s: clock.seconds(s) for s in ("prep", "train", "pick")},
        "call_seconds": {s: clock.seconds(s) for s in ("evaluate", "predict")},
        "best": picked,
    }
    print("test accuracy %.4f (%d/%d), %d library instances, %d set-ups" % (
        summary["accuracy"], correct, total, summary["instances"], summary["setups"]), file=out)
    print(json.dumps(summary, sort_keys=True), file=out, flush=True)
    return summary


def main(argv):
    a = parse(argv)
    try:
        s = run(a)
    except (trellis.TrellisError, RuntimeError, OSError) as e:
        print("pipeline.py:", e, file=sys.stderr)
        return 1
    if s["accuracy"] < a.min_accuracy:
        print("pipeline.py: FAILED: test accuracy %.4f is under --min-accuracy %g" % (s["accuracy"], a.min_accuracy), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
