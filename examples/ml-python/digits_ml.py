"""digits_ml: the pieces of the Python ML example, standard library only.

The digits data (8x8 images, 64 pixels 0..16 then the label), a split into
a test set and shards, a softmax-regression model trained by stochastic
gradient descent, and the three steps the pipeline runs as command tasks:

    python3 digits_ml.py prep --data digits.csv.gz --out split [--limit N]
    python3 digits_ml.py train --lr 0.5 --l2 1e-4 --out model.json split/train-*.csv
    python3 digits_ml.py pick --validation split/train-3.csv --out best.json model-*.json

Each prints one line of JSON on stdout. The library functions (setup,
evaluate, predict) are the serverless half: pipeline.py installs them with
trellis.Library.from_functions, and setup loads the test set and the best
model once per library instance.
"""

import argparse
import glob
import gzip
import json
import math
import os
import random
import socket
import sys
import time

PIXELS = 64
CLASSES = 10

# The sweep: learning rate times L2 penalty, as the Go example's.
SWEEP = [(0.1, 1e-4), (0.5, 1e-4), (0.1, 1e-2), (0.5, 1e-2), (2.0, 1e-4), (2.0, 1e-2)]


def read_rows(path):
    """read_rows returns the (pixels, label) rows of a digits CSV file, gzipped or plain."""
    opener = gzip.open if path.endswith(".gz") else open
    rows = []
    with opener(path, "rt") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            vals = line.split(",")
            if len(vals) != PIXELS + 1:
                raise ValueError("%s:%d: %d values, want %d (64 pixels and the label)" % (path, n, len(vals), PIXELS + 1))
            rows.append(([int(v) for v in vals[:PIXELS]], int(vals[PIXELS])))
    return rows


def write_rows(path, rows):
    with open(path, "w") as f:
        for px, label in rows:
            f.write(",".join(map(str, px)) + ",%d\n" % label)


def split(rows, test_fraction, shards, seed):
    """split shuffles rows with seed and returns (test, [shard...]): the
    first test_fraction of them, and the rest dealt round-robin."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_test = int(round(len(rows) * test_fraction))
    test = [rows[i] for i in order[:n_test]]
    parts = [[] for _ in range(shards)]
    for k, i in enumerate(order[n_test:]):
        parts[k % shards].append(rows[i])
    return test, parts


def features(px):
    # Pixels scaled to 0..1, and a constant 1 for the bias.
    return [v / 16.0 for v in px] + [1.0]


def train(rows, lr, l2, epochs, seed):
    """train fits softmax regression by SGD with a learning rate that
    decays as 1/(1+epoch); returns the weights, CLASSES lists of PIXELS+1."""
    rnd = random.Random(seed)
    xs = [(features(px), y) for px, y in rows]
    w = [[0.0] * (PIXELS + 1) for _ in range(CLASSES)]
    for epoch in range(epochs):
        rnd.shuffle(xs)
        rate = lr / (1 + epoch)
        shrink = 1 - rate * l2
        for x, y in xs:
            scores = [sum(a * b for a, b in zip(wc, x)) for wc in w]
            top = max(scores)
            exps = [math.exp(s - top) for s in scores]
            total = sum(exps)
            for c in range(CLASSES):
                g = exps[c] / total - (1.0 if c == y else 0.0)
                wc = w[c]
                if g > 1e-6 or g < -1e-6:
                    step = rate * g
                    w[c] = [shrink * a - step * b for a, b in zip(wc, x)]
                elif shrink != 1:
                    w[c] = [shrink * a for a in wc]
    return w


def predict(w, px):
    x = features(px)
    scores = [sum(a * b for a, b in zip(wc, x)) for wc in w]
    return scores.index(max(scores))


def accuracy(w, rows):
    if not rows:
        return 0.0
    return sum(predict(w, px) == y for px, y in rows) / len(rows)


def save_model(path, model):
    with open(path, "w") as f:
        json.dump(model, f)


def load_model(path):
    with open(path) as f:
        return json.load(f)


def expand(patterns):
    """expand matches glob patterns itself (a task has no shell), in lexical order."""
    out = []
    for p in patterns:
        m = sorted(glob.glob(p))
        if not m:
            raise FileNotFoundError("no file matches %r" % p)
        out.extend(m)
    return out


# The steps, run as command tasks.

def step_prep(a):
    rows = read_rows(a.data)
    if a.limit:
        rows = rows[:a.limit]
    test, parts = split(rows, a.test_fraction, a.shards, a.seed)
    os.makedirs(a.out, exist_ok=True)
    write_rows(os.path.join(a.out, "test.csv"), test)
    for i, p in enumerate(parts):
        write_rows(os.path.join(a.out, "train-%d.csv" % i), p)
    return {"rows": len(rows), "test": len(test), "shards": [len(p) for p in parts]}


def step_train(a):
    rows = []
    for path in expand(a.shards):
        rows.extend(read_rows(path))
    start = time.monotonic()
    w = train(rows, a.lr, a.l2, a.epochs, a.seed)
    secs = time.monotonic() - start
    save_model(a.out, {"lr": a.lr, "l2": a.l2, "epochs": a.epochs, "rows": len(rows), "weights": w})
    return {"lr": a.lr, "l2": a.l2, "rows": len(rows), "train_accuracy": round(accuracy(w, rows), 4), "seconds": round(secs, 3)}


def step_pick(a):
    val = read_rows(a.validation)
    best, best_acc, scores = None, -1.0, []
    for path in expand(a.models):
        m = load_model(path)
        acc = accuracy(m["weights"], val)
        scores.append({"lr": m["lr"], "l2": m["l2"], "validation_accuracy": round(acc, 4)})
        if acc > best_acc:  # the first of equals wins: deterministic
            best, best_acc = m, acc
    best["validation_accuracy"] = best_acc
    save_model(a.out, best)
    return {"best": {"lr": best["lr"], "l2": best["l2"], "validation_accuracy": round(best_acc, 4)}, "scores": scores}


def main(argv):
    p = argparse.ArgumentParser(prog="digits_ml.py")
    sub = p.add_subparsers(dest="step", required=True)
    s = sub.add_parser("prep")
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--test-fraction", type=float, default=0.25)
    s.add_argument("--shards", type=int, default=4)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--limit", type=int, default=0, help="use only the first N rows")
    s = sub.add_parser("train")
    s.add_argument("--lr", type=float, required=True)
    s.add_argument("--l2", type=float, required=True)
    s.add_argument("--epochs", type=int, default=10)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--out", required=True)
    s.add_argument("shards", nargs="+")
    s = sub.add_parser("pick")
    s.add_argument("--validation", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("models", nargs="+")
    a = p.parse_args(argv)
    try:
        out = {"prep": step_prep, "train": step_train, "pick": step_pick}[a.step](a)
    except (OSError, ValueError, KeyError) as e:
        print("digits_ml.py %s: %s" % (a.step, e), file=sys.stderr)
        return 1
    print(json.dumps(out, sort_keys=True))
    return 0


# The library: loaded once per instance by setup, then many calls.

_setups = 0  # set-ups this process ran: one, unless the library reloads


def setup():
    """setup loads the test set and the best model, the library's inputs,
    once per library instance."""
    global _setups
    _setups += 1
    return {"test": read_rows("test.csv"), "model": load_model("best.json"), "pid": "%s:%d" % (socket.gethostname(), os.getpid())}  # unique across hosts


def _answer(state, **fields):
    # Every answer says which instance gave it and how many set-ups it ran.
    fields.update(instance=state["pid"], setups=_setups)
    return fields


def evaluate(start, count, state):
    """evaluate returns how many of test rows [start, start+count) the model gets right."""
    rows = state["test"][start:start + count]
    w = state["model"]["weights"]
    return _answer(state, correct=sum(predict(w, px) == y for px, y in rows), total=len(rows))


def predict_batch(start, count, state):
    """predict_batch returns the predicted labels of test rows [start, start+count)."""
    w = state["model"]["weights"]
    return _answer(state, labels=[predict(w, px) for px, _ in state["test"][start:start + count]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
