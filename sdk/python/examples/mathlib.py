"""mathlib: a small trellis library.

Run by a worker as `python3 mathlib.py` (with trellis_library.py next to it or on
PYTHONPATH). By hand: `TRELLIS_LIBRARY_SLOTS=4 python3 mathlib.py` prints the handshake and
then waits for frames on stdin.
"""

import math
import statistics

import trellis_library as tl

lib = tl.Library("mathlib")


@lib.setup
def load():
    # Runs once, before the handshake: load models, open files, warm caches here.
    return {"primes": _sieve(100_000)}


@lib.function
def add(args):
    return args[0] + args[1]


@lib.function
def mul(args):
    return args[0] * args[1]


@lib.function
def stats(args):
    """stats of a list of numbers: {"mean": .., "stdev": .., "n": ..}."""
    return {
        "n": len(args),
        "mean": statistics.fmean(args),
        "stdev": statistics.pstdev(args),
    }


@lib.function
def is_prime(n, state):
    if n < len(state["primes"]):
        return state["primes"][n]
    return all(n % d for d in range(2, math.isqrt(n) + 1))


@lib.function("sqrt")
def square_root(x):
    if x < 0:
        raise ValueError("square root of a negative number: %r" % x)
    tl.log("sqrt of %r" % x)
    return math.sqrt(x)


def _sieve(n):
    sieve = [True] * n
    sieve[0] = sieve[1] = False
    for i in range(2, math.isqrt(n) + 1):
        if sieve[i]:
            sieve[i * i :: i] = [False] * len(range(i * i, n, i))
    return sieve


if __name__ == "__main__":
    lib.serve()
