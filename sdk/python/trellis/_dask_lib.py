"""The library that runs Dask graph tasks on workers (trellis.dask).

Each call's body is a pickle of (task, dependency keys); the call's directory
holds the dependencies' values as files d0, d1, ... (pickles), and the call
writes the task's value, pickled, to the file "out".
"""

import os
import pickle

import trellis_library as tl
from dask.core import _execute_task

lib = tl.Library("trellis-dask")


def _load(path):
    with open(path, "rb") as f:
        return pickle.load(f)


@lib.function(raw=True)
def run(body):
    task, deps = pickle.loads(body)
    d = tl.call_dir()
    cache = {key: _load(os.path.join(d, "d%d" % i)) for i, key in enumerate(deps)}
    value = _execute_task(task, cache)
    with open(os.path.join(d, "out"), "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    return None


if __name__ == "__main__":
    lib.serve()
