"""Libraries: long-running processes on workers that serve calls.

A Library runs a command in a sandbox with its inputs. from_module and
from_functions build one from Python code, packaged with trellis_library.py
(the library SDK, docs/library-protocol.md).
"""

import importlib.util
import inspect
import os

from . import errors
from .files import Buffer, File, LocalFile

_MAIN = "trellis_main.py"


def library_sdk_path():
    """library_sdk_path returns the path of trellis_library.py: the installed
    module, or the one next to this package in the repository."""
    spec = importlib.util.find_spec("trellis_library")
    if spec is not None and spec.origin and os.path.exists(spec.origin):
        return spec.origin
    p = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "trellis_library.py")
    if not os.path.exists(p):
        raise errors.TrellisError("trellis_library.py (the library SDK) was not found: pip install sdk/python, "
                                  "or copy it next to the trellis package")
    return p


class Library:
    """Library is a process hosting named functions, started on workers as
    calls need it. start_timeout is in seconds."""

    def __init__(self, name, command, *, inputs=(), env=None, cores=1, memory_mb=0, disk_mb=0, gpus=0,
                 slots=1, mode="direct", max_instances=0, eager=0, every_worker=False, start_timeout=None):
        self.name = name
        self.command = command
        self.inputs = list(inputs)  # (File, path)
        self.env = dict(env or {})
        self.cores, self.memory_mb, self.disk_mb, self.gpus = cores, memory_mb, disk_mb, gpus
        self.slots, self.mode = slots, mode
        self.max_instances, self.eager, self.every_worker = max_instances, eager, every_worker
        self.start_timeout = start_timeout

    def add_input(self, file, path):
        """add_input places file at path in each instance's sandbox; returns the library."""
        if not isinstance(file, File):
            raise errors.InvalidError("library %r: input %r: want a trellis file, got %r" % (self.name, path, file))
        self.inputs.append((file, path))
        return self

    @classmethod
    def from_module(cls, path, name=None, *, python="python3", **options):
        """from_module makes a library of a script written with trellis_library
        (it calls lib.serve()); the SDK travels with it."""
        base = os.path.basename(path)
        lib = cls(name or os.path.splitext(base)[0], "%s %s" % (python, base), **options)
        lib.add_input(LocalFile(path), base)
        lib.add_input(LocalFile(library_sdk_path()), "trellis_library.py")
        return lib

    @classmethod
    def from_functions(cls, *functions, setup=None, name=None, python="python3", **options):
        """from_functions makes a library serving module-level functions. The
        source files of their modules travel with it (modules they import
        must be on the workers). A call's args is the list of positional
        arguments: call(lib, "add", [1, 2]) runs add(1, 2). A function with a
        `state` parameter gets what setup() returned."""
        if not functions:
            raise errors.InvalidError("Library.from_functions: give at least one function")
        modules = {}   # source file -> (input path, module name)
        entries = []   # (served name, input path, module name, qualified name)

        def place(fn):
            if not callable(fn) or "<locals>" in getattr(fn, "__qualname__", "<locals>") or fn.__name__ == "<lambda>":
                raise errors.InvalidError("Library.from_functions: %r is not a module-level function: define it at the top "
                                          "level of a module" % (fn,))
            try:
                src = inspect.getsourcefile(fn)
            except TypeError:
                src = None
            if not src or not os.path.exists(src):
                raise errors.InvalidError("Library.from_functions: the source file of %s is not found (defined "
                                          "interactively?): put it in a module" % fn.__qualname__)
            src = os.path.abspath(src)
            if src not in modules:
                mod = fn.__module__ if fn.__module__ != "__main__" else "trellis_user_main"
                modules[src] = ("mod_%d_%s" % (len(modules), os.path.basename(src)), mod)
            return modules[src]

        for fn in functions:
            path, mod = place(fn)
            entries.append((fn.__name__, path, mod, fn.__qualname__))
        setup_entry = None
        if setup is not None:
            path, mod = place(setup)
            setup_entry = (path, mod, setup.__qualname__)
        name = name or "py-" + "-".join(e[0] for e in entries)[:60]
        main = _MAIN_TEMPLATE % {"name": name, "modules": sorted(set(modules.values())), "entries": entries, "setup": setup_entry}
        lib = cls(name, "%s %s" % (python, _MAIN), **options)
        lib.add_input(Buffer(main), _MAIN)
        lib.add_input(LocalFile(library_sdk_path()), "trellis_library.py")
        for src, (path, _) in sorted(modules.items()):
            lib.add_input(LocalFile(src), path)
        return lib

    def _install(self, cluster):
        spec = {
            "name": self.name, "command": self.command,
            "env": ["%s=%s" % kv for kv in self.env.items()],
            "resources": {"cores": self.cores or 1, "memoryMb": self.memory_mb, "diskMb": self.disk_mb, "gpus": self.gpus},
            "slots": self.slots, "mode": self.mode, "maxInstances": self.max_instances, "eager": self.eager,
            "everyWorker": self.every_worker, "startTimeoutMs": int((self.start_timeout or 0) * 1000),
        }
        decls = {}
        spec["inputs"] = [cluster._input_ref(f, path, decls) for f, path in self.inputs]
        cluster._conn.unary("InstallLibrary", {"library": spec, "files": [decls[n] for n in sorted(decls)]})


_MAIN_TEMPLATE = '''"""trellis_main.py: made by trellis.Library.from_functions."""
import importlib.util
import inspect
import os
import sys

import trellis_library as tl

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
MODULES = %(modules)r
ENTRIES = %(entries)r
SETUP = %(setup)r

mods = {}
for path, name in MODULES:
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, path))
    m = importlib.util.module_from_spec(spec)
    sys.modules[name] = m
    spec.loader.exec_module(m)
    mods[path] = m


def lookup(path, qualname):
    obj = mods[path]
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


lib = tl.Library(%(name)r)
if SETUP:
    lib.setup(lambda: lookup(SETUP[0], SETUP[2])())


def serve(served, path, qualname):
    fn = lookup(path, qualname)
    takes_state = "state" in inspect.signature(fn).parameters

    def call(args, state=None):
        args = [] if args is None else args
        if not isinstance(args, list):
            raise TypeError("%%s takes its arguments as a JSON list, got %%s" %% (served, type(args).__name__))
        return fn(*args, state=state) if takes_state else fn(*args)

    lib.function(call, name=served)


for served, path, _mod, qualname in ENTRIES:
    serve(served, path, qualname)

if __name__ == "__main__":
    lib.serve()
'''
