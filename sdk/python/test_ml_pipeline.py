"""Test of examples/ml-python, the ML pipeline from the Python client: it
runs on a real local cluster (the trellis binary: $TRELLIS_BIN, else
bin/trellis: make build) on a subset of the digits, and its JSON line must
match the same steps computed here in-process.

    python3 -m unittest discover -s sdk/python -p 'test_ml_pipeline.py'
"""

import json
import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EXAMPLE = os.path.join(ROOT, "examples", "ml-python")
BINARY = os.environ.get("TRELLIS_BIN") or os.path.join(ROOT, "bin", "trellis")
DATA = os.path.join(ROOT, "examples", "ml", "data", "digits.csv.gz")
HANG = 120  # seconds: a hang, not speed (the subset runs in a few seconds)

sys.path.insert(0, EXAMPLE)
import digits_ml  # noqa: E402


class MLPipelineTest(unittest.TestCase):
    def test_subset_matches_in_process(self):
        if not os.access(BINARY, os.X_OK):
            raise AssertionError("no trellis binary at %s: run make build, or set TRELLIS_BIN" % BINARY)
        limit, sweep, epochs = 400, 2, 5
        p = subprocess.run([sys.executable, os.path.join(EXAMPLE, "pipeline.py"), "--binary", BINARY,
                            "--limit", str(limit), "--sweep", str(sweep), "--epochs", str(epochs), "--min-accuracy", "0.8"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=HANG)
        self.assertEqual(p.returncode, 0, "pipeline.py exit status; stderr:\n" + p.stderr.decode())
        got = json.loads(p.stdout.decode().strip().splitlines()[-1])

        # The same steps here: same split, same seeds, so the same models.
        rows = digits_ml.read_rows(DATA)[:limit]
        test, parts = digits_ml.split(rows, 0.25, 4, 1)
        train_rows = parts[0] + parts[1] + parts[2]
        best, best_acc = None, -1.0
        for lr, l2 in digits_ml.SWEEP[:sweep]:
            w = digits_ml.train(train_rows, lr, l2, epochs, 1)
            acc = digits_ml.accuracy(w, parts[3])
            if acc > best_acc:
                best, best_acc = (lr, l2, w), acc
        correct = sum(digits_ml.predict(best[2], px) == y for px, y in test)

        n = len(test)
        want = {"tasks": 2 + sweep, "calls": -(-n // 20) + -(-n // 10), "test_rows": n, "correct": correct,
                "accuracy": round(correct / n, 4),
                "best": {"lr": best[0], "l2": best[1], "validation_accuracy": round(best_acc, 4)}}
        self.assertEqual({k: got.get(k) for k in want}, want, "got (pipeline.py's JSON), want (in process)")
        self.assertGreaterEqual(got["accuracy"], 0.8)
        self.assertGreaterEqual(got["instances"], 1)
        self.assertEqual(got["setups"], got["instances"], "set-ups: one per library instance")
        self.assertLess(got["instances"], got["calls"], "the library must serve several calls per set-up")


if __name__ == "__main__":
    unittest.main()
