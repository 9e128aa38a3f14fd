"""Tests of trellis.dask: Dask graphs (dask.array, dask.bag, dask.delayed)
run on a real cluster, with results equal to Dask's threaded scheduler.

They need dask and numpy: Debian's python3-dask and python3-numpy (.ci/run
installs them). When this Python does not see them, Debian's
dist-packages is tried; without them the tests are skipped, saying why.
"""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BINARY = os.environ.get("TRELLIS_BIN") or os.path.join(HERE, "..", "..", "bin", "trellis")
DEBIAN = "/usr/lib/python3/dist-packages"


def _import_dask():
    try:
        import dask  # noqa: F401
        import numpy  # noqa: F401
        return None
    except ImportError:
        pass
    # Debian's packages are built for Debian's Python: only that version may use them.
    debian_python = "/usr/lib/python%d.%d" % sys.version_info[:2]
    if not (os.path.isdir(DEBIAN) and os.path.isdir(debian_python)):
        return "dask and numpy are not installed for %s (apt-get install python3-dask python3-numpy, for /usr/bin/python3)" % sys.executable
    sys.path.append(DEBIAN)
    try:
        import dask  # noqa: F401,F811
        import numpy  # noqa: F401,F811
        return None
    except ImportError as e:
        sys.path.remove(DEBIAN)
        return "dask and numpy of %s do not import: %s" % (DEBIAN, str(e).strip().splitlines()[-1])


MISSING = _import_dask()

if MISSING is None:
    import dask
    import dask.array as da
    import dask.bag as db
    import numpy as np

import trellis  # noqa: E402

sys.path.insert(0, os.path.join(HERE, "testdata"))
import pyfuncs  # noqa: E402


@unittest.skipIf(MISSING, "trellis.dask tests skipped: %s" % MISSING)
class DaskTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(BINARY, os.X_OK):
            raise AssertionError("no trellis binary at %s: run make build, or set TRELLIS_BIN" % BINARY)
        cls.c = trellis.local(workers=2, binary=BINARY, cores=2)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def test_array_reduction(self):
        x = da.arange(10000, chunks=1000).reshape(100, 100).rechunk(25)
        y = (x + x.T).sum(axis=0) / x.std()
        got = y.compute(scheduler=self.c.dask_get)
        self.assertTrue(np.array_equal(got, y.compute(scheduler="threads")))

    def test_from_numpy_data(self):
        a = np.arange(400.0).reshape(20, 20)  # literal chunks in the graph
        x = da.from_array(a, chunks=5)
        y = x.dot(x).mean()
        self.assertEqual(y.compute(scheduler=self.c.dask_get), y.compute(scheduler="threads"))

    def test_bag_map_fold(self):
        b = db.from_sequence(range(100), npartitions=7).map(lambda v: v * v).fold(lambda a, b: a + b)
        self.assertEqual(b.compute(scheduler=self.c.dask_get), b.compute(scheduler="threads"))

    def test_delayed_pipeline_nested_keys(self):
        inc = dask.delayed(lambda v: v + 1)
        d = [inc(i) for i in range(5)]
        s = dask.delayed(sum)(d)
        got = dask.compute(s, d, scheduler=self.c.dask_get)
        self.assertEqual(got, dask.compute(s, d, scheduler="threads"))

    def test_raw_graph_with_alias(self):
        dsk = {"a": 1, "b": (pyfuncs.add, "a", 10), "c": "b", "d": (pyfuncs.add, "c", "c")}
        self.assertEqual(trellis.dask.get(dsk, ["d", "c", "a"], cluster=self.c), [22, 11, 1])

    def test_failing_task_raises_call_error(self):
        d = [dask.delayed(pyfuncs.fails_on_three)(i) for i in range(5)]
        with self.assertRaises(trellis.CallError) as cm:
            dask.compute(dask.delayed(sum)(d), scheduler=self.c.dask_get)
        self.assertIn("ArithmeticError: three is not allowed", cm.exception.message)
        self.assertIn("fails_on_three", cm.exception.traceback)


if __name__ == "__main__":
    unittest.main()
