#!/usr/bin/env python3
"""Deterministic benchmark corpus generator for the lifeboat side-by-side benchmarks.

Python standard library only.  Every random decision comes from a
``random.Random`` seeded with a string derived from ``--seed``, so the same
seed produces the same bytes (the /usr part is deterministic as long as /usr
itself does not change -- see README.md).

Usage:
    python3 benches/corpus.py --out DIR [--size-mib N] [--kind mixed|image] [--seed S]
    python3 benches/corpus.py --out DIR --change [--kind mixed|image] [--seed S]

Kinds:
    mixed  ~50% real files copied from /usr (binaries, libraries, scripts, docs),
           ~30% incompressible random files (4 KiB .. 64 MiB),
           ~20% compressible generated text (logs, prose, CSV, JSON lines).
    image  a sparse ext4 disk image DIR/disk.img of --size-mib MiB, filled to
           ~40% with a "mixed" sub-corpus via ``mkfs.ext4 -d`` (no mount, no
           loop device needed).  Made byte-reproducible with a fixed UUID,
           hash seed, E2FSPROGS_FAKE_TIME and debugfs-normalised inode times;
           then sparsified (exactly the non-zero 4 KiB blocks are allocated).

--change alters an existing corpus in place:
    mixed  ~5% of the bytes: insertions in the middle of files (shifting
           content), appends, in-place overwrites, deletions and new files;
    image  overwrites ~5% of the used (non-zero) blocks in 4 KiB..2 MiB
           regions at seeded offsets, and writes 1% more as new data into
           free (hole) space; the image size stays the same.
    Files that have more than one hard link are copied before being modified
    (copy-on-write), so a change can be applied to a ``cp -al`` clone of a
    corpus without touching the original.

A JSON summary is printed on stdout.
"""

import argparse
import array
import errno
import hashlib
import json
import math
import operator
import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid

KiB = 1024
MiB = 1024 * 1024
FIXED_EPOCH = 1_700_000_000          # mtimes/atimes of generated files and image inodes
DEFAULT_SEED = 1
DEFAULT_SIZE_MIB = 2048
CHANGE_FRACTION = 0.05
# Bumped whenever the bytes a kind produces (generation or --change) change;
# compare.py keys its corpus cache on this, so editing the image code does not
# invalidate a cached mixed corpus and vice versa.  "image" embeds a mixed
# sub-corpus, so a new mixed version needs a new image version too.
GENERATOR_VERSION = {"mixed": "1", "image": "2"}
IMAGE_FILL = 0.40              # share of the image size filled with files
IMAGE_BLOCK = 4096             # granularity of holes, extents and the change step

# Share of the /usr budget per subtree (leftover rolls over to the next one,
# then to a final sweep over the whole of /usr).
USR_ROOTS = [
    ("bin", 0.20),       # binaries, scripts
    ("sbin", 0.03),
    ("lib", 0.42),       # shared libraries, python modules, ...
    ("libexec", 0.05),
    ("include", 0.08),   # headers (source-like text)
    ("share", 0.22),     # docs, man pages, scripts, data
]
USR_MAX_FILE = 64 * MiB


def rng_for(seed, *parts):
    """A Random seeded from a string: str seeds are hashed with SHA-512, so
    this is stable across Python runs and PYTHONHASHSEED values."""
    return random.Random(":".join(str(p) for p in (seed,) + parts))


def log_uniform(rng, lo, hi):
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def walk_files(top):
    """Sorted, deterministic walk: yields (relpath, abspath) of regular files."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            yield os.path.relpath(p, top), p


def tree_digest(top):
    """SHA-256 over (relative path, size, sha256(content)) of every file and
    every directory of a tree, in sorted order.  Metadata (mtime, mode) is not
    part of the digest."""
    h = hashlib.sha256()
    files = 0
    total = 0
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        rel = os.path.relpath(dirpath, top)
        h.update(b"D\0" + rel.encode("utf-8", "surrogateescape") + b"\n")
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if not stat.S_ISREG(st.st_mode):
                h.update(b"O\0" + os.path.join(rel, name).encode("utf-8", "surrogateescape") + b"\n")
                continue
            with open(p, "rb") as f:
                fd = hashlib.file_digest(f, "sha256").hexdigest()
            h.update(b"F\0" + os.path.join(rel, name).encode("utf-8", "surrogateescape")
                     + b"\0%d\0" % st.st_size + fd.encode() + b"\n")
            files += 1
            total += st.st_size
    return {"sha256": h.hexdigest(), "files": files, "bytes": total}


def write_random(path, n, rng):
    with open(path, "wb") as f:
        left = n
        while left > 0:
            k = min(MiB, left)
            f.write(rng.randbytes(k))
            left -= k


def set_fixed_times(top, epoch=FIXED_EPOCH):
    """Deterministic atime/mtime for every entry below top (dirs last)."""
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.utime(p, (epoch, epoch))
        os.utime(dirpath, (epoch, epoch))


def data_extents(path):
    """[(start, end)] of the non-hole parts of a (sparse) file."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    break
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            pos = end
    except OSError:
        # filesystem without SEEK_DATA support: treat as fully allocated
        out = [(0, os.fstat(fd).st_size)]
    finally:
        os.close(fd)
    return out


def sparse_copy(src, dst):
    """Copy src to dst preserving holes."""
    size = os.stat(src).st_size
    ext = data_extents(src)
    fi = os.open(src, os.O_RDONLY)
    fo = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for start, end in ext:
            off = start
            while off < end:
                n = min(end - off, 64 * MiB)
                try:
                    done = os.copy_file_range(fi, fo, n, off, off)
                except (OSError, AttributeError):
                    os.lseek(fi, off, os.SEEK_SET)
                    os.lseek(fo, off, os.SEEK_SET)
                    done = os.write(fo, os.read(fi, min(n, 8 * MiB)))
                if done <= 0:
                    raise OSError("short copy of %s at %d" % (src, off))
                off += done
        os.ftruncate(fo, size)
    finally:
        os.close(fi)
        os.close(fo)


def break_link(path):
    """Make sure path is not shared with another hard link before an in-place
    modification (copy-on-write for ``cp -al`` clones)."""
    st = os.stat(path)
    if st.st_nlink <= 1:
        return
    tmp = path + ".lbcow"
    sparse_copy(path, tmp)
    os.chmod(tmp, stat.S_IMODE(st.st_mode))
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# text generation
# --------------------------------------------------------------------------

class TextGen:
    """Pseudo-words with a Zipf-like frequency distribution, mapped through a
    65536-entry quantile table so that word sampling runs at C speed."""

    LEVELS = ("INFO",) * 12 + ("DEBUG",) * 6 + ("WARN",) * 2 + ("ERROR",)

    def __init__(self, seed):
        r = rng_for(seed, "vocab")
        cons = "bcdfghjklmnprstvwz"
        vows = ["a", "e", "i", "o", "u", "ai", "ou", "ee"]
        sylls = [c + v for c in cons for v in vows] + ["str", "th", "qu", "x", "ion", "er"]
        words = set()
        while len(words) < 12000:
            n = r.choice((1, 1, 2, 2, 2, 2, 3, 3, 3, 4))
            words.add("".join(r.choice(sylls) for _ in range(n)))
        words = sorted(words)
        r.shuffle(words)
        # Zipf(1.05) quantile table
        weights = [1.0 / (i + 1) ** 1.05 for i in range(len(words))]
        total = sum(weights)
        table = []
        acc = 0.0
        wi = 0
        for q in range(65536):
            target = (q + 0.5) / 65536 * total
            while acc + weights[wi] < target and wi < len(words) - 1:
                acc += weights[wi]
                wi += 1
            table.append(words[wi])
        self.table = tuple(table)
        self.hosts = ["node-%02d" % i for i in range(24)]
        self.services = sorted({r.choice(words) + "d" for _ in range(40)})

    def words(self, rng, n):
        if n <= 0:
            return ()
        a = array.array("H", rng.randbytes(2 * n))
        if sys.byteorder != "little":
            a.byteswap()
        if n == 1:
            return (self.table[a[0]],)
        return operator.itemgetter(*a)(self.table)

    # each generator returns a str of at least `n` characters (ASCII)
    def gen_log(self, rng, n):
        out = []
        size = 0
        t = FIXED_EPOCH - rng.randrange(86400 * 365)
        ms = 0
        while size < n:
            ws = self.words(rng, 2048)
            i = 0
            while i < len(ws) - 20 and size < n:
                k = 4 + (ws[i].__len__() * 7 + i) % 12
                ms += rng.randrange(1, 2500)
                if ms >= 1000:
                    t += ms // 1000
                    ms %= 1000
                g = time.gmtime(t)
                line = "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s[%d]: %s %s id=%d\n" % (
                    g.tm_year, g.tm_mon, g.tm_mday, g.tm_hour, g.tm_min, g.tm_sec, ms,
                    self.hosts[rng.randrange(len(self.hosts))],
                    self.services[rng.randrange(len(self.services))],
                    1000 + rng.randrange(30000),
                    self.LEVELS[rng.randrange(len(self.LEVELS))],
                    " ".join(ws[i:i + k]), rng.randrange(1 << 20))
                out.append(line)
                size += len(line)
                i += k
        return "".join(out)

    def gen_prose(self, rng, n):
        out = []
        size = 0
        title = " ".join(self.words(rng, 4)).title()
        out.append("# %s\n\n" % title)
        size += len(out[0])
        while size < n:
            ws = self.words(rng, 4096)
            i = 0
            while i < len(ws) - 200 and size < n:
                if rng.random() < 0.08:
                    h = "\n## %s\n\n" % " ".join(ws[i:i + 3]).capitalize()
                    out.append(h)
                    size += len(h)
                    i += 3
                lines = rng.randint(2, 8)
                para = []
                for _ in range(lines):
                    k = rng.randint(8, 14)
                    para.append(" ".join(ws[i:i + k]))
                    i += k
                p = (". ".join(para)).capitalize() + ".\n\n"
                out.append(p)
                size += len(p)
        return "".join(out)

    def gen_csv(self, rng, n):
        out = ["id,name,category,count,amount,status\n"]
        size = len(out[0])
        row = 0
        while size < n:
            ws = self.words(rng, 3000)
            for j in range(0, 2997, 3):
                row += 1
                line = "%d,%s,%s,%d,%.2f,%s\n" % (
                    row, ws[j], ws[j + 1], rng.randrange(10000),
                    rng.random() * 1000, ws[j + 2])
                out.append(line)
                size += len(line)
                if size >= n:
                    break
        return "".join(out)

    def gen_jsonl(self, rng, n):
        out = []
        size = 0
        row = 0
        while size < n:
            ws = self.words(rng, 3000)
            for j in range(0, 2995, 5):
                row += 1
                line = ('{"id":%d,"user":"%s","action":"%s","value":%d,'
                        '"tags":["%s","%s"],"ok":%s}\n') % (
                    row, ws[j], ws[j + 1], rng.randrange(1 << 24), ws[j + 2], ws[j + 3],
                    "true" if rng.random() < 0.9 else "false")
                out.append(line)
                size += len(line)
                if size >= n:
                    break
        return "".join(out)

    KINDS = (("log", "log"), ("prose", "md"), ("csv", "csv"), ("jsonl", "jsonl"))

    def write_file(self, path, n, rng, kind):
        gen = getattr(self, "gen_" + kind)
        with open(path, "wb") as f:
            left = n
            while left > 0:
                chunk = min(left, 4 * MiB)
                f.write(gen(rng, chunk).encode("ascii")[:chunk])
                left -= chunk

    def blob(self, rng, n, kind="prose"):
        return getattr(self, "gen_" + kind)(rng, n).encode("ascii")[:n]


# --------------------------------------------------------------------------
# mixed corpus
# --------------------------------------------------------------------------

def copy_usr(out, budget, usr="/usr"):
    """Deterministically copy real files from /usr (sorted walks, per-subtree
    budgets).  Returns (files, bytes, selection_digest)."""
    taken = set()
    sel = hashlib.sha256()
    files = 0
    used = 0

    def take_from(top, sub_budget):
        nonlocal files, used
        left = sub_budget
        if not os.path.isdir(top):
            return left
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            # never descend into symlinked dirs (os.walk default) nor into the output
            for name in sorted(filenames):
                if left < 4 * KiB:
                    return left
                src = os.path.join(dirpath, name)
                if src in taken:
                    continue
                try:
                    st = os.lstat(src)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode) or st.st_size > min(left, USR_MAX_FILE):
                    continue
                rel = os.path.relpath(src, os.path.dirname(usr.rstrip("/")) or "/")
                dst = os.path.join(out, rel)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                try:
                    shutil.copyfile(src, dst, follow_symlinks=False)
                except OSError:
                    try:
                        os.unlink(dst)
                    except OSError:
                        pass
                    continue
                size = os.lstat(dst).st_size
                os.chmod(dst, 0o755 if st.st_mode & 0o111 else 0o644)
                os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns))
                taken.add(src)
                sel.update(b"%s\0%d\n" % (rel.encode("utf-8", "surrogateescape"), size))
                files += 1
                used += size
                left -= size
        return left

    carry = 0
    for sub, share in USR_ROOTS:
        carry = take_from(os.path.join(usr, sub), int(budget * share) + carry)
    if carry > MiB:
        take_from(usr, carry)
    return files, used, sel.hexdigest()


def gen_random_files(out, budget, seed):
    rng = rng_for(seed, "random-sizes")
    files = 0
    used = 0
    i = 0
    while budget - used >= 4 * KiB:
        n = min(log_uniform(rng, 4 * KiB, 64 * MiB), budget - used)
        d = os.path.join(out, "random", "d%02d" % (i // 16))
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, "blob-%05d.bin" % i)
        write_random(p, n, rng_for(seed, "random-data", i))
        os.utime(p, (FIXED_EPOCH + i, FIXED_EPOCH + i))
        files += 1
        used += n
        i += 1
    return files, used


def gen_text_files(out, budget, seed, tg):
    rng = rng_for(seed, "text-sizes")
    files = 0
    used = 0
    i = 0
    while budget - used >= 1 * KiB:
        n = min(log_uniform(rng, 1 * KiB, 8 * MiB), budget - used)
        kind, ext = tg.KINDS[rng.randrange(len(tg.KINDS))]
        d = os.path.join(out, "text", kind, "d%02d" % (i // 32))
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, "%s-%05d.%s" % (kind, i, ext))
        tg.write_file(p, n, rng_for(seed, "text-data", i), kind)
        os.utime(p, (FIXED_EPOCH + i, FIXED_EPOCH + i))
        files += 1
        used += n
        i += 1
    return files, used


def gen_mixed(out, total_bytes, seed, usr="/usr"):
    os.makedirs(out, exist_ok=True)
    usr_files, usr_bytes, usr_sel = copy_usr(out, int(total_bytes * 0.5), usr)
    rnd_files, rnd_bytes = gen_random_files(out, int(total_bytes * 0.3), seed)
    tg = TextGen(seed)
    txt_budget = max(0, total_bytes - usr_bytes - rnd_bytes)
    txt_files, txt_bytes = gen_text_files(out, txt_budget, seed, tg)
    set_fixed_times_dirs(out)
    return {
        "files": usr_files + rnd_files + txt_files,
        "bytes": usr_bytes + rnd_bytes + txt_bytes,
        "parts": {
            "usr": {"files": usr_files, "bytes": usr_bytes, "selection_sha256": usr_sel},
            "random": {"files": rnd_files, "bytes": rnd_bytes},
            "text": {"files": txt_files, "bytes": txt_bytes},
        },
    }


def set_fixed_times_dirs(top):
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        os.utime(dirpath, (FIXED_EPOCH, FIXED_EPOCH))


# --------------------------------------------------------------------------
# image corpus
# --------------------------------------------------------------------------

def which(prog):
    p = shutil.which(prog)
    if p:
        return p
    for d in ("/sbin", "/usr/sbin"):
        q = os.path.join(d, prog)
        if os.access(q, os.X_OK):
            return q
    raise SystemExit("corpus.py: %s not found (install e2fsprogs)" % prog)


def gen_image(out, size_mib, seed, usr="/usr"):
    os.makedirs(out, exist_ok=True)
    img = os.path.join(out, "disk.img")
    size = size_mib * MiB
    parent = os.path.dirname(os.path.abspath(out))
    src = tempfile.mkdtemp(prefix=".imgsrc-", dir=parent)
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(FIXED_EPOCH))
    try:
        sub = gen_mixed(src, int(size * IMAGE_FILL), "%s:image" % seed, usr)
        set_fixed_times(src)
        r = rng_for(seed, "image-ids")
        fs_uuid = str(uuid.UUID(bytes=r.randbytes(16), version=4))
        hash_seed = str(uuid.UUID(bytes=r.randbytes(16), version=4))
        if os.path.exists(img):
            os.unlink(img)
        subprocess.run(["truncate", "-s", str(size), img], check=True)
        subprocess.run([which("mkfs.ext4"), "-F", "-q", "-U", fs_uuid,
                        "-E", "hash_seed=%s" % hash_seed, "-L", "lbbench",
                        "-d", src, img], check=True, env=env)
        normalise_inode_times(img, env)
        sparsify(img)
    finally:
        shutil.rmtree(src, ignore_errors=True)
    os.utime(img, (FIXED_EPOCH, FIXED_EPOCH))
    used = sum(e - s for s, e in nonzero_extents(img))
    return {"files": 1, "bytes": size, "allocated_bytes": used,
            "fill": round(used / size, 3),
            "filesystem": {"type": "ext4", "uuid": fs_uuid, "files": sub["files"],
                           "file_bytes": sub["bytes"], "parts": sub["parts"]}}


def nonzero_extents(path, block=IMAGE_BLOCK):
    """[(start, end)] of the block-aligned runs of a file that contain a
    non-zero byte.  Content-based, so unlike SEEK_DATA it does not depend on
    how the underlying file system allocated the file (unwritten extents,
    page-cache state, copy_file_range behaviour)."""
    out = []
    zero = bytes(block)
    big_zero = bytes(MiB)
    size = os.stat(path).st_size
    run = None
    with open(path, "rb", buffering=0) as f:
        for s, e in data_extents(path):            # holes read as zeros: skip them
            s -= s % block
            f.seek(s)
            pos = s
            while pos < e:
                buf = f.read(min(MiB, -(-e // block) * block - pos))
                if not buf:
                    break
                if buf == big_zero[:len(buf)]:
                    if run:
                        out.append(run)
                        run = None
                    pos += len(buf)
                    continue
                for i in range(0, len(buf), block):
                    nz = buf[i:i + block] != zero[:len(buf[i:i + block])]
                    b = pos + i
                    if nz:
                        if run and run[1] == b:
                            run = (run[0], min(size, b + block))
                        else:
                            if run:
                                out.append(run)
                            run = (b, min(size, b + block))
                pos += len(buf)
    if run:
        out.append(run)
    return out


def sparsify(path, block=IMAGE_BLOCK):
    """Rewrite path so that exactly its non-zero blocks are allocated (like
    ``cp --sparse=always``).  mke2fs zeroes ranges with fallocate, which
    leaves unwritten extents whose SEEK_DATA answer depends on the page cache;
    after this the image's holes are a pure function of its content."""
    size = os.stat(path).st_size
    tmp = path + ".sparse"
    ext = nonzero_extents(path, block)
    with open(path, "rb", buffering=0) as fi, open(tmp, "wb") as fo:
        for s, e in ext:
            fi.seek(s)
            fo.seek(s)
            left = e - s
            while left > 0:
                k = min(8 * MiB, left)
                fo.write(fi.read(k))
                left -= k
        fo.truncate(size)
        fo.flush()
        os.fsync(fo.fileno())
    os.replace(tmp, path)


def normalise_inode_times(img, env):
    """mke2fs -d copies ctime/atime of the source files (ctime cannot be set
    from user space), so rewrite ctime/atime of every used inode with debugfs
    to make the image byte-reproducible."""
    out = subprocess.run([which("dumpe2fs"), "-h", img], check=True, env=env,
                         capture_output=True, text=True).stdout
    fields = {}
    for line in out.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields[k.strip()] = v.strip()
    used = int(fields["Inode count"]) - int(fields["Free inodes"])
    inodes = [2, 11] + list(range(12, used + 1))
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs", delete=False) as f:
        for ino in inodes:
            f.write("sif <%d> ctime @%d\nsif <%d> atime @%d\n" % (ino, FIXED_EPOCH, ino, FIXED_EPOCH))
        cmdfile = f.name
    try:
        subprocess.run([which("debugfs"), "-w", "-f", cmdfile, img], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        os.unlink(cmdfile)


# --------------------------------------------------------------------------
# change step
# --------------------------------------------------------------------------

def change_mixed(top, seed):
    rng = rng_for(seed, "change")
    tg = TextGen(seed)
    entries = []
    total = 0
    for rel, p in walk_files(top):
        st = os.lstat(p)
        if stat.S_ISREG(st.st_mode):
            entries.append((rel, st.st_size))
            total += st.st_size
    files_before = len(entries)
    budget = int(total * CHANGE_FRACTION)
    plan = {"delete": 0.10, "insert": 0.25, "append": 0.15, "overwrite": 0.25, "new": 0.25}
    ops = {k: {"files": 0, "bytes": 0} for k in plan}
    pool = list(entries)
    rng.shuffle(pool)
    dirs = sorted({os.path.dirname(rel) for rel, _ in entries})

    def is_text(rel):
        return rel.startswith("text" + os.sep)

    def payload(r, n, rel):
        if is_text(rel):
            return tg.blob(r, n, "prose")
        return r.randbytes(n)

    def next_file(min_size=0, max_size=None):
        # first file in the shuffled pool that fits; bounded scan keeps it cheap
        for idx in range(min(len(pool), 5000)):
            rel, size = pool[idx]
            if size >= min_size and (max_size is None or size <= max_size):
                return pool.pop(idx)
        return None

    # deletions
    b = int(budget * plan["delete"])
    while ops["delete"]["bytes"] < b:
        f = next_file(1, max(4 * KiB, (b - ops["delete"]["bytes"]) * 2))
        if f is None:
            break
        os.unlink(os.path.join(top, f[0]))
        ops["delete"]["files"] += 1
        ops["delete"]["bytes"] += f[1]

    # insertions in the middle (shift everything after the insertion point)
    b = int(budget * plan["insert"])
    while ops["insert"]["bytes"] < b:
        f = next_file(4 * KiB)
        if f is None:
            break
        rel, size = f
        n = min(log_uniform(rng, 256, 256 * KiB), b - ops["insert"]["bytes"])
        n = max(n, 1)
        off = rng.randint(size // 4, (3 * size) // 4)
        p = os.path.join(top, rel)
        with open(p, "rb") as fi:
            data = fi.read()
        mode = stat.S_IMODE(os.stat(p).st_mode)
        tmp = p + ".lbtmp"
        with open(tmp, "wb") as fo:
            fo.write(data[:off])
            fo.write(payload(rng, n, rel))
            fo.write(data[off:])
        os.chmod(tmp, mode)
        os.replace(tmp, p)       # new inode: also breaks a cp -al hard link
        ops["insert"]["files"] += 1
        ops["insert"]["bytes"] += n

    # appends
    b = int(budget * plan["append"])
    while ops["append"]["bytes"] < b:
        f = next_file(1)
        if f is None:
            break
        rel, size = f
        n = max(1, min(log_uniform(rng, 512, 512 * KiB), b - ops["append"]["bytes"]))
        p = os.path.join(top, rel)
        break_link(p)
        with open(p, "ab") as fo:
            fo.write(payload(rng, n, rel))
        ops["append"]["files"] += 1
        ops["append"]["bytes"] += n

    # in-place overwrites
    b = int(budget * plan["overwrite"])
    while ops["overwrite"]["bytes"] < b:
        f = next_file(8 * KiB)
        if f is None:
            break
        rel, size = f
        n = max(1, min(log_uniform(rng, 4 * KiB, max(4 * KiB + 1, min(MiB, size // 2))),
                       b - ops["overwrite"]["bytes"], size))
        off = rng.randint(0, size - n)
        p = os.path.join(top, rel)
        break_link(p)
        with open(p, "r+b") as fo:
            fo.seek(off)
            fo.write(payload(rng, n, rel))
        ops["overwrite"]["files"] += 1
        ops["overwrite"]["bytes"] += n

    # new files: half in a new directory, half scattered over existing ones
    b = int(budget * plan["new"])
    i = 0
    while ops["new"]["bytes"] < b:
        n = max(1, min(log_uniform(rng, KiB, 8 * MiB), b - ops["new"]["bytes"]))
        if rng.random() < 0.5 or not dirs:
            d = os.path.join(top, "new")
        else:
            d = os.path.join(top, dirs[rng.randrange(len(dirs))])
        os.makedirs(d, exist_ok=True)
        textual = rng.random() < 0.4
        p = os.path.join(d, "new-%05d.%s" % (i, "log" if textual else "bin"))
        r = rng_for(seed, "change-new", i)
        if textual:
            tg.write_file(p, n, r, "log")
        else:
            write_random(p, n, r)
        ops["new"]["files"] += 1
        ops["new"]["bytes"] += n
        i += 1

    changed = sum(v["bytes"] for v in ops.values())
    return {"files_before": files_before, "bytes_before": total, "target_bytes": budget,
            "changed_bytes": changed, "ops": ops}


def change_image(top, seed):
    """Rewrite ~5% of the image's used (non-zero) blocks in place and write
    some new data into free (hole) space, keeping the file size -- what a file
    system does when files are modified and new files are created.

    * overwrites: CHANGE_FRACTION of the used bytes, in regions of
      log-uniform 4 KiB .. 2 MiB at seeded 4 KiB-aligned offsets inside the
      used extents (half random bytes, half text, like modified files);
    * new data: a fifth of that amount, in 64 KiB .. 1 MiB regions at seeded
      4 KiB-aligned offsets inside holes (like newly allocated extents).

    Offsets are chosen from the content-based extent map of the image
    (``nonzero_extents``), so the change is the same on every machine."""
    img = os.path.join(top, "disk.img")
    rng = rng_for(seed, "image-change")
    tg = TextGen(seed)
    break_link(img)
    size = os.stat(img).st_size
    ext = nonzero_extents(img)
    used = sum(e - s for s, e in ext)
    holes = []
    prev = 0
    for s, e in ext + [(size, size)]:
        if s - prev >= IMAGE_BLOCK:
            holes.append((prev, s))
        prev = e
    hole_bytes = sum(e - s for s, e in holes)
    ow_budget = int(used * CHANGE_FRACTION)
    new_budget = min(ow_budget // 5, hole_bytes // 4)

    def pick(extents, total, n):
        """A seeded, block-aligned region of at most n bytes inside one of
        the extents (uniform over their bytes)."""
        pos = rng.randrange(total)
        for s, e in extents:
            if pos < e - s:
                break
            pos -= e - s
        n = max(IMAGE_BLOCK, min(n, ((e - s) // IMAGE_BLOCK) * IMAGE_BLOCK))
        start = s + (pos // IMAGE_BLOCK) * IMAGE_BLOCK
        start = max(s, min(start, e - n))
        return start, min(n, e - start)

    def payload(n):
        if rng.random() < 0.5:
            return rng.randbytes(n)
        return tg.blob(rng, n, rng.choice(("log", "prose", "csv", "jsonl")))

    ops = {"overwrite": {"regions": 0, "bytes": 0}, "new": {"regions": 0, "bytes": 0}}
    with open(img, "r+b") as f:
        for op, extents, total, budget, lo, hi in (
                ("overwrite", ext, used, ow_budget, IMAGE_BLOCK, 2 * MiB),
                ("new", holes, hole_bytes, new_budget, 64 * KiB, MiB)):
            while ops[op]["bytes"] < budget and total > 0:
                n = log_uniform(rng, lo, hi)
                n = min(n, budget - ops[op]["bytes"])
                n = max(IMAGE_BLOCK, (n + IMAGE_BLOCK - 1) // IMAGE_BLOCK * IMAGE_BLOCK)
                start, n = pick(extents, total, n)
                f.seek(start)
                left = n
                while left > 0:
                    k = min(MiB, left)
                    f.write(payload(k))
                    left -= k
                ops[op]["regions"] += 1
                ops[op]["bytes"] += n
    assert os.stat(img).st_size == size
    written = sum(v["bytes"] for v in ops.values())
    return {"files_before": 1, "bytes_before": size, "allocated_bytes": used,
            "hole_bytes": hole_bytes, "target_bytes": ow_budget + new_budget,
            "changed_bytes": written, "ops": ops}


# --------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="corpus directory (required)")
    ap.add_argument("--size-mib", type=int, default=DEFAULT_SIZE_MIB,
                    help="corpus size (mixed) / image size (image), default %(default)s")
    ap.add_argument("--kind", choices=("mixed", "image"), default=None,
                    help="default: mixed; with --change: detected from the directory")
    ap.add_argument("--seed", default=str(DEFAULT_SEED), help="seed (default %(default)s)")
    ap.add_argument("--change", action="store_true",
                    help="alter ~5%% of an existing corpus in place instead of generating")
    ap.add_argument("--force", action="store_true",
                    help="delete a non-empty --out directory before generating")
    ap.add_argument("--no-digest", action="store_true",
                    help="skip the content digest in the summary (saves a full read)")
    ap.add_argument("--usr", default="/usr", help=argparse.SUPPRESS)
    ap.add_argument("--generator-version", action="store_true",
                    help="print the generator version of --kind (default mixed) and exit")
    a = ap.parse_args(argv)
    if a.generator_version:
        print(GENERATOR_VERSION[a.kind or "mixed"])
        return 0
    if not a.out:
        ap.error("--out is required")

    out = os.path.abspath(a.out)
    t0 = time.monotonic()
    if a.change:
        if not os.path.isdir(out):
            ap.error("--change: %s does not exist" % out)
        kind = a.kind or ("image" if os.path.isfile(os.path.join(out, "disk.img")) else "mixed")
        if kind == "image":
            res = change_image(out, a.seed)
        else:
            res = change_mixed(out, a.seed)
        res = dict({"mode": "change", "kind": kind, "out": out, "seed": a.seed}, **res)
    else:
        kind = a.kind or "mixed"
        if os.path.exists(out) and os.listdir(out):
            if not a.force:
                ap.error("%s exists and is not empty (use --force to replace it)" % out)
            shutil.rmtree(out)
        if a.size_mib < 1:
            ap.error("--size-mib must be >= 1")
        if kind == "image":
            res = gen_image(out, a.size_mib, a.seed, a.usr)
        else:
            res = gen_mixed(out, a.size_mib * MiB, a.seed, a.usr)
        res = dict({"mode": "generate", "kind": kind, "out": out, "seed": a.seed,
                    "generator_version": GENERATOR_VERSION[kind],
                    "size_mib": a.size_mib}, **res)
    res["elapsed_s"] = round(time.monotonic() - t0, 2)
    if not a.no_digest:
        d = tree_digest(out)
        res["digest"] = d["sha256"]
        res["files"] = d["files"]
        res["bytes"] = d["bytes"]
    json.dump(res, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
