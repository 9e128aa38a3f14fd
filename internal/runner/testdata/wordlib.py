"""wordlib: the Python library that the runner's tests call.

It reads words.txt, which a task of the test workflow writes, once in
its set-up step.
"""

import trellis_library as tl

lib = tl.Library("wordlib")


@lib.setup
def load():
    with open("words.txt") as f:
        return {"words": f.read().split()}


@lib.function
def count(args, state):
    return {"words": len(state["words"]), "of": args}


@lib.function
def longest(n, state):
    return sorted(state["words"], key=lambda w: (-len(w), w))[:n]


def _check(word, state):
    if word not in state["words"]:
        raise KeyError("no such word: %s" % word)
    return word


@lib.function
def find(word, state):
    return _check(word, state)


if __name__ == "__main__":
    lib.serve()
