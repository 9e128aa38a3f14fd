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
