"""The manager's wire: Connect RPCs in JSON over HTTP/1.1 (over TLS where the
cluster has it), and its file store.

connect-go serves the Connect protocol: a unary call is a POST of a JSON
object (Content-Type: application/json); Watch, a server stream, is a POST
of one enveloped message (application/connect+json) answered by enveloped
messages: a flags byte, a 4-byte big-endian length, the JSON. Flag 2 marks
the end of the stream, whose JSON may hold an error. Every request carries
the secret as "Authorization: Bearer SECRET", as the Go client's do.
"""

import hashlib
import http.client
import json
import socket
import ssl
import struct
import threading

from . import errors

_ENVELOPE = struct.Struct(">BI")
_END_STREAM = 0x02
_SERVICE = "/trellis.v1.Manager/"


def _error_of(op, status, body):
    """_error_of turns a Connect error body into the package's exception."""
    if status == 400 and body.startswith(b"Client sent an HTTP request to an HTTPS server"):
        return errors.InvalidError("%s: the manager speaks TLS: connect with tls_ca= (the cluster CA, "
                                   "the manager's trellis-tls/ca.pem; docs/tls.md)" % op)
    try:
        err = json.loads(body or b"{}")
    except ValueError:
        err = {}
    code = err.get("code") or ("unavailable" if status in (502, 503, 504) else "unknown")
    message = err.get("message") or "HTTP %d: %s" % (status, body[:200].decode("utf-8", "replace"))
    return errors.from_code(code, "%s: %s" % (op, message))


class _NoDelay:
    """_NoDelay makes an http.client connection send without Nagle's delay:
    http.client writes a request's headers and body apart, and the body
    would otherwise wait for the manager's (delayed) acknowledgement of the
    headers."""

    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _HTTPConnection(_NoDelay, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_NoDelay, http.client.HTTPSConnection):
    pass


def tls_context(ca_file):
    """tls_context trusts the cluster CA in ca_file (PEM: the manager's
    trellis-tls/ca.pem) and checks the name dialled, as the Go clients'
    --tls-ca does; it speaks HTTP/1.1 (ALPN)."""
    try:
        return _trusting(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise errors.InvalidError("TLS CA file %s: %s" % (ca_file, e)) from None


def _trusting(**ca):
    """_trusting is a client context that trusts the CA given (cafile= or
    cadata=, as ssl.create_default_context takes it) and checks the name
    dialled; it speaks HTTP/1.1 (ALPN)."""
    ctx = ssl.create_default_context(**ca)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def pinned_tls_context(addr, fingerprint, timeout=10.0):
    """pinned_tls_context trusts the certificate of the SHA-256 fingerprint
    ("sha256:" and 64 hex digits, as the manager prints it) among those the
    manager at addr (HOST:PORT) sends, as the Go clients' --tls-fingerprint
    does: it reads the manager's chain once (a handshake that verifies
    nothing, and sends nothing), takes the certificate of that fingerprint,
    and returns tls_context's kind of context trusting it alone, which then
    verifies every connection (the manager's name, the chain, the time) as
    with tls_ca. Python's ssl shows a peer's chain only from 3.13; before,
    CPython has it as the private get_unverified_chain (3.10 on)."""
    want = _parse_fingerprint(fingerprint)
    host, port = split_addr(addr)
    host = host.strip("[]")  # an IPv6 address, as http.client takes it
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with probe.wrap_socket(raw, server_hostname=host) as tls:
                chain = _unverified_chain(tls)
    except ssl.SSLError as e:
        raise errors.InvalidError("TLS to %s: %s: is it a trellis manager with TLS?" % (addr, e)) from None
    except OSError as e:
        raise errors.ManagerUnreachable("TLS to %s: %s" % (addr, e)) from None
    for der in chain:
        if hashlib.sha256(der).digest() == want:
            return _trusting(cadata=der)
    raise errors.InvalidError("manager %s: no certificate it sends has the fingerprint pinned (tls_fingerprint): "
                              "give the fingerprint this manager printed" % addr)


def _unverified_chain(tls):
    """_unverified_chain returns the DER certificates the peer of tls sent."""
    get = getattr(tls, "get_unverified_chain", None)  # Python 3.13
    if get is not None:
        return [bytes(c) if isinstance(c, (bytes, bytearray)) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in get()]
    get = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    if get is None:
        raise errors.InvalidError("tls_fingerprint needs Python's ssl to show the manager's certificate chain "
                                  "(CPython 3.10 or later): give tls_ca= (the manager's trellis-tls/ca.pem) instead")
    return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in get() or ()]


def _parse_fingerprint(s):
    """_parse_fingerprint is the 32 bytes of "sha256:HEX" (colons allowed)."""
    h = s.lower()
    if h.startswith("sha256:"):
        h = h[len("sha256:"):]
    h = h.replace(":", "")
    try:
        b = bytes.fromhex(h)
    except ValueError:
        b = b""
    if len(b) != 32:
        raise errors.InvalidError("tls_fingerprint %r: want sha256: and 64 hex digits, as the manager printed" % s)
    return b


def split_addr(addr):
    """split_addr returns the host and port of a manager's address
    (HOST:PORT), or raises InvalidError."""
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise errors.InvalidError("manager address %r: want HOST:PORT, such as 127.0.0.1:9123" % addr)
    return host, int(port)


def _http_conn(host, port, ctx, **kwargs):
    """_http_conn is an http.client connection to host:port, over TLS with ctx."""
    if ctx is None:
        return _HTTPConnection(host, port, **kwargs)
    return _HTTPSConnection(host, port, context=ctx, **kwargs)


class _UnaryConn:
    """_UnaryConn is a kept-alive HTTP/1.1 connection for unary calls: one
    write per request and a lean reading of the answer. http.client parses
    every answer's headers with the email package, which costs more than the
    manager takes to answer a Submit."""

    def __init__(self, host, port, timeout, ctx=None):
        self.sock = socket.create_connection((host, port), timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ctx is not None:
            try:
                self.sock = ctx.wrap_socket(self.sock, server_hostname=host)
            except BaseException:
                self.sock.close()
                raise
        self.rfile = self.sock.makefile("rb")

    def roundtrip(self, head, body):
        """roundtrip sends head (bytes up to the blank line) and body; it
        returns (status, body, keep)."""
        self.sock.sendall(head + body)
        line = self.rfile.readline(65537)
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise http.client.BadStatusLine(line)
        status = int(parts[1])
        length, chunked, keep = None, False, True
        while True:
            h = self.rfile.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                length = int(v)
            elif k == b"transfer-encoding":
                chunked = b"chunked" in v.lower()
            elif k == b"connection":
                keep = b"close" not in v.lower()
        if chunked:
            out = []
            while True:
                n = int(self.rfile.readline(1024).split(b";")[0], 16)
                if n == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out.append(self._read(n))
                self.rfile.readline(16)
            data = b"".join(out)
        elif length is not None:
            data = self._read(length)
        else:
            data, keep = self.rfile.read(), False
        return status, data, keep

    def _read(self, n):
        data = self.rfile.read(n)
        if len(data) < n:
            raise http.client.IncompleteRead(data, n - len(data))
        return data

    def close(self):
        self.rfile.close()
        self.sock.close()


class Pool:
    """Pool keeps each thread's kept-alive connections, one per address
    (HOST:PORT), over TLS with tls (an ssl.SSLContext, or None); it is safe
    for use from several threads."""

    def __init__(self, tls, timeout):
        self.tls = tls
        self.timeout = timeout  # to connect, and to wait for answers where roundtrip is given none
        self._local = threading.local()
        self._lock = threading.Lock()  # guards _conns
        self._conns = set()            # every thread's, for close()

    def roundtrip(self, addr, head, body, timeout=None):
        """roundtrip sends head and body on this thread's connection to addr
        and returns (status, body). A kept-alive connection that fails (the
        server closed it while idle) is tried once more on a fresh one: the
        request may be sent twice. timeout (seconds; None: the pool's)
        bounds the wait for the answer; its end raises TimeoutError."""
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        for attempt in (0, 1):
            c = conns.pop(addr, None)
            fresh = c is None
            if fresh:
                host, _, port = addr.rpartition(":")
                c = _UnaryConn(host, int(port), self.timeout, self.tls)
                with self._lock:
                    self._conns.add(c)
            try:
                c.sock.settimeout(timeout if timeout is not None else self.timeout)
                status, data, keep = c.roundtrip(head, body)
            except TimeoutError:
                self._drop(c)
                raise
            except (OSError, http.client.HTTPException, ValueError):
                self._drop(c)
                if fresh or attempt == 1:
                    raise
                continue
            if keep:
                conns[addr] = c
            else:
                self._drop(c)
            return status, data
        raise OSError("unreachable")

    def _drop(self, c):
        c.close()
        with self._lock:
            self._conns.discard(c)

    def close(self):
        """close closes the connections of every thread."""
        with self._lock:
            conns, self._conns = self._conns, set()
        for c in conns:
            c.close()


class Conn:
    """Conn reaches one manager; each thread gets its own HTTP connection,
    as http.client connections are not safe for concurrent use."""

    def __init__(self, addr, secret, timeout=60.0, tls=None):
        self.host, self.port = split_addr(addr)
        self.addr = addr
        self.secret = secret
        self.timeout = timeout
        self.tls = tls  # an ssl.SSLContext (tls_context), or None for plain HTTP
        self._pool = Pool(tls, timeout)

    def _headers(self, content_type=None):
        h = {"Authorization": "Bearer " + self.secret}
        if content_type:
            h["Content-Type"] = content_type
        return h

    def unary(self, method, request):
        """unary calls method with request (a dict) and returns the answer."""
        body = json.dumps(request, separators=(",", ":")).encode()
        head = ("POST %s%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                "Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n"
                % (_SERVICE, method, self.addr, self.secret, len(body))).encode()
        try:
            status, data = self._pool.roundtrip(self.addr, head, body)  # every call here may be sent twice
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise errors.ManagerUnreachable("%s at manager %s: %s" % (method, self.addr, e)) from None
        if status != 200:
            raise _error_of(method, status, data)
        return json.loads(data or b"{}")

    def stream(self, method, request):
        """stream starts a server stream on a connection of its own; it returns
        a Stream whose messages() yields dicts until the stream ends."""
        c = _http_conn(self.host, self.port, self.tls, timeout=self.timeout)
        data = json.dumps(request).encode()
        try:
            c.request("POST", _SERVICE + method, body=_ENVELOPE.pack(0, len(data)) + data,
                      headers=self._headers("application/connect+json"))
            resp = c.getresponse()
        except (ConnectionError, http.client.HTTPException, OSError) as e:
            c.close()
            raise errors.ManagerUnreachable("%s at manager %s: %s" % (method, self.addr, e)) from None
        if resp.status != 200:
            body = resp.read()
            c.close()
            raise _error_of(method, resp.status, body)
        # The stream may stay quiet for as long as no task changes state.
        if c.sock is not None:
            c.sock.settimeout(None)
        return Stream(method, c, resp)

    def file(self, method, name, body=None, size=None):
        """file sends a request to the manager's file store (/files/NAME) and
        returns the response, on a connection of its own that closes with it.
        body may be bytes or a readable of size bytes."""
        c = _http_conn(self.host, self.port, self.tls, timeout=self.timeout, blocksize=1 << 16)
        headers = self._headers()
        if size is not None:
            headers["Content-Length"] = str(size)
        try:
            c.request(method, "/files/" + name, body=body, headers=headers)
            resp = c.getresponse()
        except (ConnectionError, http.client.HTTPException, OSError) as e:
            c.close()
            raise errors.ManagerUnreachable("%s /files/%s at manager %s: %s" % (method, name, self.addr, e)) from None
        if resp.status == 401:
            c.close()
            raise errors.AuthError("%s /files/%s: manager %s refused the secret: use the manager's --secret-file" % (method, name, self.addr))
        resp.conn_to_close = c
        return resp

    def close(self):
        """close closes the connections of every thread."""
        self._pool.close()


class Stream:
    """Stream is one server stream; close() ends it from another thread."""

    def __init__(self, method, conn, resp):
        self.method = method
        self._conn = conn
        self._resp = resp

    def messages(self):
        """messages yields each message; it raises the stream's error, if it
        ended with one, and ManagerUnreachable if it broke."""
        buf = b""
        try:
            while True:
                # Whatever has come, in one read: a burst of events is parsed
                # from the buffer without a read per envelope.
                while len(buf) < _ENVELOPE.size:
                    more = self._resp.read1(1 << 16)
                    if not more:
                        raise errors.ManagerUnreachable("%s: the stream broke" % self.method)
                    buf += more
                flags, n = _ENVELOPE.unpack_from(buf)
                end = _ENVELOPE.size + n
                while len(buf) < end:
                    more = self._resp.read1(max(1 << 16, end - len(buf)))
                    if not more:
                        raise errors.ManagerUnreachable("%s: the stream broke inside a message" % self.method)
                    buf += more
                msg = json.loads(buf[_ENVELOPE.size:end] or b"{}")
                buf = buf[end:]
                if flags & _END_STREAM:
                    err = msg.get("error")
                    if err:
                        raise errors.from_code(err.get("code", "unknown"), "%s: %s" % (self.method, err.get("message", "")))
                    return
                yield msg
        except (OSError, http.client.HTTPException, ValueError, AttributeError) as e:
            # AttributeError: close() from another thread took the socket away.
            raise errors.ManagerUnreachable("%s: the stream broke: %s" % (self.method, e)) from None

    def close(self):
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._conn.close()
