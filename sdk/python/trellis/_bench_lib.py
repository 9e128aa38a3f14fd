"""The library of python3 -m trellis.bench: one no-op function."""

import trellis_library as tl

lib = tl.Library("bench-noop")


@lib.function
def noop(args):
    return None


if __name__ == "__main__":
    lib.serve()
