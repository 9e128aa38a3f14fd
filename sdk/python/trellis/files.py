"""Files, as in the Go API: where a task's data comes from and goes to.

A file's cache name comes from its content (local files, buffers) or is
unique to it (outputs, temp files), so that the same data never moves twice
to one worker. The names follow the Go client's, so both share a cache.
"""

import hashlib
import io
import os
import secrets
import tempfile
import threading

from . import _dirtar, errors

# How long workers keep a file (Go: trellis.CacheTask ...).
CACHE_TASK = "CACHE_LEVEL_TASK"
CACHE_WORKFLOW = "CACHE_LEVEL_WORKFLOW"
CACHE_WORKER = "CACHE_LEVEL_WORKER"
CACHE_FOREVER = "CACHE_LEVEL_FOREVER"

# MAX_INLINE is the largest file that travels inside a task (proto.MaxInlineBytes).
MAX_INLINE = 64 << 10


class File:
    """File is a declared piece of data; make one with LocalFile, Buffer,
    URL, Temp, Unpack or Output."""

    kind = None

    def __init__(self):
        self.level = None
        self.replicas = 0
        self.depth = 0
        self._name = None
        self._lock = threading.Lock()

    def cache(self, level):
        """cache sets how long workers keep the file (CACHE_TASK ...), and returns it."""
        if level not in (CACHE_TASK, CACHE_WORKFLOW, CACHE_WORKER, CACHE_FOREVER):
            raise errors.InvalidError("cache level %r: use trellis.CACHE_TASK, CACHE_WORKFLOW, CACHE_WORKER or CACHE_FOREVER" % (level,))
        self.level = level
        return self

    def keep(self):
        """keep keeps a temp file for the session, so that the client may
        fetch it after its readers are done (Go: File.Keep); else it is
        pruned once no task reads it. It returns the file."""
        return self.cache(CACHE_WORKFLOW)

    def prune_depth(self, n):
        """prune_depth keeps a pruned temp file until the readers of its
        readers, n levels down, are done too (Go: File.PruneDepth), so that
        a lost file re-runs at most n producers back. It returns the file."""
        n = int(n)
        if not 0 <= n <= 16:
            raise errors.InvalidError("prune_depth %d: use 0 to 16" % n)
        self.depth = n
        return self

    def with_replicas(self, n):
        """with_replicas asks that a temp file be kept on n distinct workers, and returns it."""
        self.replicas = int(n)
        return self

    @property
    def name(self):
        """name is the file's cache name."""
        with self._lock:
            if self._name is None:
                self._name = self._make_name()
            return self._name

    def _make_name(self):
        raise NotImplementedError

    def content(self):
        """content returns the bytes to upload (LocalFile, Buffer), else None."""
        return None

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, self.name)


class LocalFile(File):
    """LocalFile is a file or directory at the client, uploaded when a task
    needs it. A directory travels as one deterministic tar stream, named by
    its digest as the Go client names it (docs/directory-digest.md)."""

    kind = "FILE_KIND_MANAGER"

    def __init__(self, path):
        super().__init__()
        self.path = os.path.abspath(path)
        self.is_dir = os.path.isdir(self.path)

    def _make_name(self):
        h = hashlib.sha256()
        try:
            if self.is_dir:
                _dirtar.write(self.path, h.update)
                return "dir-" + h.hexdigest()
            with open(self.path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except (OSError, ValueError) as e:
            raise errors.InvalidError("LocalFile(%r): %s" % (self.path, getattr(e, "strerror", None) or e)) from None
        return "sha256-" + h.hexdigest()

    def content(self):
        with open(self.path, "rb") as f:
            return f.read()

    def open(self):
        """open returns (a readable of the bytes to upload, their size)."""
        if not self.is_dir:
            return open(self.path, "rb"), os.path.getsize(self.path)
        tmp = tempfile.TemporaryFile()
        _dirtar.write(self.path, tmp.write)
        size = tmp.tell()
        tmp.seek(0)
        return tmp, size

    def size(self):
        if self.is_dir:
            return None  # never inline
        return os.path.getsize(self.path)


class Buffer(File):
    """Buffer is a file holding data (bytes, or str as UTF-8)."""

    kind = "FILE_KIND_MANAGER"

    def __init__(self, data):
        super().__init__()
        self.data = data.encode() if isinstance(data, str) else bytes(data)

    def _make_name(self):
        return "sha256-" + hashlib.sha256(self.data).hexdigest()

    def content(self):
        return self.data

    def open(self):
        return io.BytesIO(self.data), len(self.data)

    def size(self):
        return len(self.data)


class URL(File):
    """URL is a file that workers fetch themselves from its origin (http,
    https, or file for a path on the worker)."""

    kind = "FILE_KIND_URL"

    def __init__(self, url):
        super().__init__()
        self.url = url

    def _make_name(self):
        return "url-" + hashlib.sha256(self.url.encode()).hexdigest()[:40]


class Temp(File):
    """Temp is a file a task produces and other tasks read: it stays in the
    workers' caches and reaches the client only when fetched."""

    kind = "FILE_KIND_TEMP"

    def _make_name(self):
        return "tmp-" + secrets.token_hex(12)


class Output(File):
    """Output is a file a task produces; when the task succeeds it is written
    to path at the client (unless path is None). Other tasks may read it."""

    kind = "FILE_KIND_OUTPUT"

    def __init__(self, path=None):
        super().__init__()
        self.path = os.path.abspath(path) if path else None

    def _make_name(self):
        return "out-" + secrets.token_hex(12)


class Unpack(File):
    """Unpack is the directory a worker makes by unpacking archive (tar,
    tar.gz or zip; format "" tells by content), once per worker."""

    kind = "FILE_KIND_UNPACK"

    def __init__(self, archive, format=""):
        super().__init__()
        if not isinstance(archive, File):
            raise errors.InvalidError("Unpack(%r): the archive must be a trellis file (LocalFile, URL, ...)" % (archive,))
        self.archive = archive
        self.format = format

    def _make_name(self):
        return "unpack-" + hashlib.sha256((self.archive.name + "|" + self.format).encode()).hexdigest()[:40]
