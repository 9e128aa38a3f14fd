"""Directories as one deterministic tar stream (docs/directory-digest.md).

The reference of the format in Python, the bytes of Go's internal/dirtar:
a directory a Python client uploads gets the cache name a Go client gives
it (dir-HEX, the SHA-256 of the stream), and the manager, which checks the
stream against its name, accepts it. Go's TestDigestVector runs this file
as a script on its test vector. Standard library only.

Usage: _dirtar.py DIR prints DIR's cache name.
"""
import hashlib
import os
import stat
import sys


BLOCK = 512


def octal(n, size):
    """size-1 octal digits, zero-padded, then NUL."""
    s = format(n, "o").encode()
    return s.rjust(size - 1, b"0") + b"\0"


def field(b, size):
    """b, cut to size bytes, NUL-padded (a field of exactly size bytes has no NUL)."""
    if len(b) > size:
        cut = b[:size]
        if cut[-1:] == b"/":  # no trailing slash in a cut name
            n = len(b[: size - 1].rstrip(b"/"))
            cut = cut[:n] + b"\0" + cut[n + 1 :]
        return cut
    return b + b"\0" * (size - len(b))


def is_ascii(b):
    return all(0 < c < 0x80 for c in b)


def to_ascii(b):
    return bytes(c for c in b if 0 < c < 0x80)


def split_ustar(name):
    """(prefix, name) when an ASCII name over 100 bytes fits USTAR's two fields."""
    if len(name) <= 100 or not is_ascii(name):
        return None
    length = len(name)
    if length > 156:
        length = 156
    elif name[length - 1 : length] == b"/":
        length -= 1
    i = name[:length].rfind(b"/")
    if i <= 0 or len(name) - i - 1 > 100 or len(name) - i - 1 == 0 or i > 155:
        return None
    return name[:i], name[i + 1 :]


def header(name, typeflag, mode, size=0, linkname=b"", prefix=b"", raw=False):
    blk = bytearray(BLOCK)
    blk[0:100] = field(name, 100)
    blk[100:108] = octal(mode, 8)
    blk[108:116] = octal(0, 8)  # uid
    blk[116:124] = octal(0, 8)  # gid
    blk[124:136] = octal(size if size < 1 << 33 else 0, 12)
    blk[136:148] = octal(0, 12)  # mtime: the Unix epoch
    blk[156:157] = typeflag
    blk[157:257] = field(linkname, 100)
    blk[257:263] = b"ustar\0"
    blk[263:265] = b"00"
    # uname, gname: empty (NUL)
    if not raw:
        blk[329:337] = octal(0, 8)  # devmajor
        blk[337:345] = octal(0, 8)  # devminor
    blk[345:500] = field(prefix, 155)
    blk[148:156] = b" " * 8
    blk[148:156] = octal(sum(blk), 7) + b" "
    return bytes(blk)


def pax_record(k, v):
    body = b" " + k + b"=" + v + b"\n"
    size = len(body) + len(str(len(body)))
    rec = str(size).encode() + body
    if len(rec) != size:
        rec = str(len(rec)).encode() + body
    return rec


def entry(name, typeflag, mode, size=0, linkname=b""):
    """The header blocks of one entry, USTAR when it fits, else PAX."""
    pax = {}
    prefix, short = b"", name
    if not is_ascii(name) or len(name) > 100:
        split = split_ustar(name)
        if split:
            prefix, short = split
        else:
            pax[b"path"] = name
    if not is_ascii(linkname) or len(linkname) > 100:
        pax[b"linkpath"] = linkname
    if size >= 1 << 33:
        pax[b"size"] = str(size).encode()
    if not pax:
        return header(short, typeflag, mode, size, linkname, prefix)
    data = b"".join(pax_record(k, pax[k]) for k in sorted(pax))
    d, f = name.rsplit(b"/", 1) if b"/" in name else (b"", name)
    xname = b"/".join(p for p in (d, b"PaxHeaders.0", f) if p)
    xname = to_ascii(xname)[:100].rstrip(b"/")
    out = header(xname, b"x", 0, len(data), raw=True) + data + pad(len(data))
    return out + header(to_ascii(name), typeflag, mode, size, to_ascii(linkname))


def pad(n):
    return b"\0" * (-n % BLOCK)


def link_ok(name, target):
    if not target or b"\0" in target or target.startswith(b"/"):
        return False
    up, named = 0, False
    for el in target.split(b"/"):
        if el in (b"", b"."):
            continue
        if el == b"..":
            if named:
                return False
            up += 1
        else:
            named = True
    return up <= name.count(b"/")


def walk(root, rel, out):
    for n in sorted(os.listdir(os.path.join(root, rel) if rel else root)):
        name = rel + b"/" + n if rel else n
        p = os.path.join(root, name)
        st = os.lstat(p)
        if stat.S_ISDIR(st.st_mode):
            out(entry(name + b"/", b"5", 0o755))
            walk(root, name, out)
        elif stat.S_ISLNK(st.st_mode):
            target = os.readlink(p)
            if not link_ok(name, target):
                raise ValueError("unsafe link %r -> %r" % (name, target))
            out(entry(name, b"2", 0o777, linkname=target))
        elif stat.S_ISREG(st.st_mode):
            with open(p, "rb") as f:
                data = f.read()
            out(entry(name, b"0", 0o755 if st.st_mode & 0o100 else 0o644, len(data)))
            out(data + pad(len(data)))
        # sockets, FIFOs, devices: left out


def write(root, out):
    """write calls out with the bytes of root's stream, in order."""
    walk(os.fsencode(root), b"", out)
    out(b"\0" * 2 * BLOCK)


def digest(root):
    """digest returns root's cache name, dir-HEX."""
    h = hashlib.sha256()
    write(root, h.update)
    return "dir-" + h.hexdigest()


if __name__ == "__main__":
    print(digest(sys.argv[1]))
