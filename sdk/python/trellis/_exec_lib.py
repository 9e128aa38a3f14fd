"""The library of trellis.Executor: runs a pickled (function, args, kwargs)
and answers the pickled value."""

import pickle

import trellis_library as tl

lib = tl.Library("trellis-executor")


@lib.function(raw=True)
def run(body):
    fn, args, kwargs = pickle.loads(body)
    return pickle.dumps(fn(*args, **kwargs), protocol=pickle.HIGHEST_PROTOCOL)


if __name__ == "__main__":
    lib.serve()
