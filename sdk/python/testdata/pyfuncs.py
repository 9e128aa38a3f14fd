"""Functions that the client tests serve with trellis.Library.from_functions."""

import os


def load():
    return {"pid": os.getpid(), "scale": 10}


def add(a, b):
    return a + b


def scaled(x, state):
    return {"value": x * state["scale"], "pid": state["pid"]}


def boom(what):
    raise ValueError("bad input: %s" % what)


def echo_bytes(n):
    return "x" * n


def fails_on_three(v):
    if v == 3:
        raise ArithmeticError("three is not allowed")
    return v


def nap(seconds):
    import time
    time.sleep(seconds)
    return seconds
