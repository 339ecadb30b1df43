#!/usr/bin/env python3
"""Side-by-side benchmark of lifeboat against restic, BorgBackup (lz4 and
zstd,3) and rustic, on the same deterministic corpus, in the same run.

For every corpus kind and every repetition, all tools go through the same
steps, interleaved step by step (step 1 for every tool, then step 2 for every
tool, ...), with the tool order rotated from one repetition to the next so
that slow drifts of machine load hit every tool alike:

    init              create an empty encrypted repository
    backup-1st        first backup of the corpus
    backup-unchanged  second backup, nothing changed
    backup-changed    backup after ~5% of the corpus changed (same path!)
    restore           restore the latest snapshot into an empty directory
    check             repository check including a full read of all data

Every step runs under /usr/bin/time -v: wall time (measured by this script
around the process), user+sys CPU time and peak RSS (from time -v); after
every step the repository size (du --apparent-size) is recorded.

Same path for all backups: the corpus directory keeps three names,
``live`` (the path that is backed up), ``orig`` and ``changed``; exactly one
of orig/changed is renamed to ``live`` at any time.  ``changed`` is a
``cp -al`` clone of ``orig`` in which only the modified files got new inodes,
so the unchanged files keep inode, size, mtime and ctime and every tool's
"unchanged file" detection works exactly as on a real incremental backup.

Python standard library only.  See benches/README.md.
"""

import argparse
import datetime
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
CORPUS_PY = os.path.join(HERE, "corpus.py")

MiB = 1024 * 1024
HOST = "lifeboat-bench"
PASSWORD = "lifeboat-bench-password"
STEPS = ["init", "backup-1st", "backup-unchanged", "backup-changed", "restore", "check"]
BACKUP_STEPS = ("backup-1st", "backup-unchanged", "backup-changed")
OK_STATUSES = ("ok", "warning")
UNSUPPORTED_RE = re.compile(
    r"unrecognized subcommand|unexpected argument|unrecognized (option|argument)|"
    r"unknown (sub)?command|unknown flag|invalid subcommand|no such (sub)?command|"
    r"not (yet )?implemented|unimplemented|unsupported", re.I)


# ---------------------------------------------------------------------------
# tools
# ---------------------------------------------------------------------------

class Tool:
    name = "?"
    binary = None
    password_env = None

    def __init__(self):
        self.reason = None           # why unavailable

    def available(self):
        return self.binary is not None and os.access(self.binary, os.X_OK)

    def env(self, home):
        e = dict(os.environ)
        e.update({
            "XDG_CACHE_HOME": os.path.join(home, "cache"),
            "XDG_CONFIG_HOME": os.path.join(home, "config"),
            "XDG_DATA_HOME": os.path.join(home, "data"),
        })
        if self.password_env:
            e[self.password_env] = PASSWORD
        return e

    def version(self):
        if not self.available():
            return "not available (%s)" % (self.reason or "not installed")
        for args in (["--version"], ["version"]):
            try:
                p = subprocess.run([self.binary] + args, capture_output=True, text=True,
                                   timeout=60, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.SubprocessError) as e:
                return "unknown (%s)" % e
            if p.returncode == 0 and p.stdout.strip():
                return p.stdout.strip().splitlines()[0]
        return "unknown"

    def warning_rc(self, step, rc):
        return False

    def snapshots_cmd(self, repo):
        return None

    def cmd(self, step, repo, live, target, state):
        """-> (argv, cwd)"""
        raise NotImplementedError


class Lifeboat(Tool):
    name = "lifeboat"
    password_env = "LIFEBOAT_PASSWORD"

    def __init__(self, path):
        super().__init__()
        self.binary = path
        if not os.path.isfile(path):
            self.reason = "binary not found: %s" % path
        elif not os.access(path, os.X_OK):
            self.reason = "binary not executable: %s" % path

    def env(self, home):
        e = super().env(home)
        for k in ("LIFEBOAT_REPOSITORY", "LIFEBOAT_PASSWORD_FILE", "LIFEBOAT_PASSWORD_COMMAND"):
            e.pop(k, None)
        return e

    def version(self):
        v = super().version()
        if self.available():
            h = hashlib.sha256()
            with open(self.binary, "rb") as f:
                h.update(f.read())
            mt = datetime.datetime.fromtimestamp(os.stat(self.binary).st_mtime).isoformat(timespec="seconds")
            v += " (binary sha256 %s, built %s%s)" % (h.hexdigest()[:12], mt, git_describe())
        return v

    def cmd(self, step, repo, live, target, state):
        b = [self.binary, "-r", repo]
        if step == "init":
            return b + ["init"], None
        if step in BACKUP_STEPS:
            return b + ["backup", live, "--host", HOST], None
        if step == "restore":
            return b + ["restore", "latest", "--target", target], None
        if step == "check":
            return b + ["check", "--read-data"], None
        raise ValueError(step)

    def snapshots_cmd(self, repo):
        return [self.binary, "-r", repo, "snapshots", "--json"]


class Restic(Tool):
    name = "restic"
    password_env = "RESTIC_PASSWORD"

    def __init__(self):
        super().__init__()
        self.binary = shutil.which("restic")

    def env(self, home):
        e = super().env(home)
        e["RESTIC_CACHE_DIR"] = os.path.join(home, "cache", "restic")
        e.pop("RESTIC_REPOSITORY", None)
        e.pop("RESTIC_PASSWORD_FILE", None)
        return e

    def version(self):
        try:
            p = subprocess.run([self.binary, "version"], capture_output=True, text=True, timeout=60)
            return p.stdout.strip() or "unknown"
        except (OSError, subprocess.SubprocessError, TypeError):
            return "not installed"

    def warning_rc(self, step, rc):
        return step in BACKUP_STEPS and rc == 3    # snapshot written, some files unreadable

    def cmd(self, step, repo, live, target, state):
        b = [self.binary, "-r", repo]
        if step == "init":
            return b + ["init"], None
        if step in BACKUP_STEPS:
            return b + ["backup", "--host", HOST, live], None
        if step == "restore":
            return b + ["restore", "latest", "--target", target], None
        if step == "check":
            return b + ["check", "--read-data"], None
        raise ValueError(step)

    def snapshots_cmd(self, repo):
        return [self.binary, "-r", repo, "snapshots", "--json"]


class Borg(Tool):
    password_env = "BORG_PASSPHRASE"

    def __init__(self, compression, name):
        super().__init__()
        self.binary = shutil.which("borg")
        self.compression = compression
        self.name = name

    def env(self, home):
        e = super().env(home)
        e.update({
            "BORG_BASE_DIR": home,                       # cache, security dir, keys
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
            "BORG_DISPLAY_PASSPHRASE": "no",
            "BORG_HOST_ID": HOST,
        })
        for k in ("BORG_REPO", "BORG_PASSCOMMAND", "BORG_PASSPHRASE_FD",
                  "BORG_CACHE_DIR", "BORG_CONFIG_DIR", "BORG_SECURITY_DIR", "BORG_KEYS_DIR"):
            e.pop(k, None)
        return e

    def warning_rc(self, step, rc):
        return rc == 1                                   # borg: 1 = warning

    def cmd(self, step, repo, live, target, state):
        if step == "init":
            return [self.binary, "init", "--encryption=repokey-blake2", repo], None
        if step in BACKUP_STEPS:
            archive = "%s-%s" % (HOST, step)
            state["pending_archive"] = archive
            return [self.binary, "create", "--compression", self.compression,
                    "%s::%s" % (repo, archive), live], None
        if step == "restore":
            archive = state.get("last_archive") or "%s-backup-changed" % HOST
            return [self.binary, "extract", "%s::%s" % (repo, archive)], target
        if step == "check":
            return [self.binary, "check", "--verify-data", repo], None
        raise ValueError(step)

    def snapshots_cmd(self, repo):
        return [self.binary, "list", "--json", repo]


class Rustic(Tool):
    name = "rustic"
    password_env = "RUSTIC_PASSWORD"

    def __init__(self):
        super().__init__()
        self.binary = shutil.which("rustic")
        if self.binary is None:
            cand = os.path.expanduser("~/.cargo/bin/rustic")
            if os.access(cand, os.X_OK):
                self.binary = cand

    def env(self, home):
        e = super().env(home)
        e["RUSTIC_CACHE_DIR"] = os.path.join(home, "cache", "rustic")
        e["RUSTIC_NO_PROGRESS"] = "true"
        for k in ("RUSTIC_REPOSITORY", "RUSTIC_PASSWORD_FILE", "RUSTIC_PASSWORD_COMMAND",
                  "RUSTIC_USE_PROFILE"):
            e.pop(k, None)
        return e

    def warning_rc(self, step, rc):
        return False

    def cmd(self, step, repo, live, target, state):
        b = [self.binary, "-r", repo]
        if step == "init":
            return b + ["init"], None
        if step in BACKUP_STEPS:
            return b + ["backup", "--host", HOST, live], None
        if step == "restore":
            return b + ["restore", "latest", target], None
        if step == "check":
            return b + ["check", "--read-data"], None
        raise ValueError(step)

    def snapshots_cmd(self, repo):
        return [self.binary, "-r", repo, "snapshots", "--json"]


def git_describe():
    try:
        p = subprocess.run(["git", "-C", REPO_ROOT, "describe", "--always", "--dirty"],
                           capture_output=True, text=True, timeout=20)
        if p.returncode == 0 and p.stdout.strip():
            return ", git %s" % p.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return ", git: no commit"


def count_snapshots(obj):
    """Count snapshots in the --json output of restic/rustic/lifeboat
    ``snapshots`` or ``borg list``; tolerant to unknown layouts."""
    if isinstance(obj, dict):
        for k in ("snapshots", "archives"):
            if k in obj:
                return count_snapshots(obj[k])
        return 0
    if isinstance(obj, list):
        if obj and all(isinstance(x, dict) for x in obj) and \
                any(k in obj[0] for k in ("id", "time", "tree", "paths", "name", "start")):
            return len(obj)
        return sum(count_snapshots(x) for x in obj)
    return 0


# ---------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------

TIME_BIN = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def parse_time_v(path):
    res = {}
    try:
        with open(path, errors="replace") as f:
            for line in f:
                line = line.strip()
                if ": " not in line:
                    continue
                k, v = line.split(": ", 1)
                k, v = k.strip(), v.strip()
                if k == "User time (seconds)":
                    res["user_s"] = float(v)
                elif k == "System time (seconds)":
                    res["sys_s"] = float(v)
                elif k == "Maximum resident set size (kbytes)":
                    res["max_rss_kib"] = int(v)
                elif k.startswith("Elapsed (wall clock) time"):
                    parts = [float(x) for x in v.split(":")]
                    s = 0.0
                    for x in parts:
                        s = s * 60 + x
                    res["time_wall_s"] = s
                elif k == "Exit status":
                    res["exit_status"] = int(v)
    except (OSError, ValueError):
        pass
    return res


def run_measured(argv, cwd, env, logbase, timeout):
    """Run argv under /usr/bin/time -v; returns a dict with rc, wall/cpu/rss."""
    tfile = logbase + ".time"
    if TIME_BIN:
        full = [TIME_BIN, "-v", "-o", tfile, "--"] + argv
    else:
        full = argv
    timed_out = False
    rusage = None
    with open(logbase + ".out", "wb") as o, open(logbase + ".err", "wb") as e:
        t0 = time.perf_counter()
        try:
            p = subprocess.Popen(full, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                 stdout=o, stderr=e, start_new_session=True)
        except OSError as ex:
            e.write(("cannot start: %s\n" % ex).encode())
            return {"rc": 127, "timed_out": False, "wall_s": 0.0, "error": str(ex)}
        deadline = t0 + timeout if timeout else None
        nap = 0.001
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                rusage = ru
                rc = os.waitstatus_to_exitcode(status)
                p.returncode = rc
                break
            if deadline and time.perf_counter() > deadline:
                timed_out = True
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(nap)
            nap = min(nap * 1.5, 0.05)
        wall = time.perf_counter() - t0
    res = {"rc": rc, "timed_out": timed_out, "wall_s": round(wall, 3)}
    tv = parse_time_v(tfile) if TIME_BIN else {}
    if "user_s" in tv:
        res.update(user_s=tv["user_s"], sys_s=tv["sys_s"], max_rss_kib=tv.get("max_rss_kib"),
                   time_v_wall_s=tv.get("time_wall_s"))
        if "exit_status" in tv:
            res["rc"] = tv["exit_status"]
    elif rusage is not None:      # no /usr/bin/time: rusage of the child itself
        res.update(user_s=round(rusage.ru_utime, 3), sys_s=round(rusage.ru_stime, 3),
                   max_rss_kib=rusage.ru_maxrss)
    if "user_s" in res:
        res["cpu_s"] = round(res["user_s"] + res["sys_s"], 3)
    return res


def tail(path, lines=15, maxchars=2000):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    t = "\n".join(data.splitlines()[-lines:])
    return t[-maxchars:]


def du_bytes(path, apparent=True):
    if not os.path.exists(path):
        return 0
    args = ["du", "-s", "-B1"] + (["--apparent-size"] if apparent else []) + [path]
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=600)
        return int(p.stdout.split()[0])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


# ---------------------------------------------------------------------------
# corpus handling
# ---------------------------------------------------------------------------

def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run_corpus_py(args):
    p = subprocess.run([sys.executable, CORPUS_PY] + args, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        raise SystemExit("corpus.py %s failed (exit %d)" % (" ".join(args), p.returncode))
    return json.loads(p.stdout)


# corpus.py files (sha256) whose output equals generator version "1" of the
# kind named here; corpora cached before versions were recorded stay valid.
LEGACY_GENERATORS = {
    "4ac3e2bcf0b4fb23225d9d48dd4134a8fc971f4e2d2ea404b25f41d1b9fe22ca": {"mixed": "1"},
}


def generator_version(kind):
    """corpus.py's version for a kind: a cached corpus is reused only if it
    was made by the same version (changing the image code does not throw
    away a cached mixed corpus)."""
    p = subprocess.run([sys.executable, CORPUS_PY, "--generator-version", "--kind", kind],
                       capture_output=True, text=True)
    if p.returncode != 0 or not p.stdout.strip():
        return "sha256:" + file_sha256(CORPUS_PY)
    return p.stdout.strip()


class Corpus:
    """<workdir>/corpus/<id>/{live,orig,changed}: exactly one of orig/changed
    is missing; that one is currently named live."""

    def __init__(self, workdir, kind, size_mib, seed):
        self.kind, self.size_mib, self.seed = kind, size_mib, seed
        self.id = "%s-%dm-s%s" % (kind, size_mib, seed)
        self.dir = os.path.join(workdir, "corpus", self.id)
        self.live = os.path.join(self.dir, "live")
        self.meta_path = os.path.join(self.dir, "meta.json")
        self.meta = None

    def current(self):
        o = os.path.isdir(os.path.join(self.dir, "orig"))
        c = os.path.isdir(os.path.join(self.dir, "changed"))
        l = os.path.isdir(self.live)
        if l and not o and c:
            return "orig"
        if l and o and not c:
            return "changed"
        if not l and o and c:
            return None
        raise RuntimeError("corpus %s is in an inconsistent state (live=%s orig=%s changed=%s); "
                           "delete it to regenerate" % (self.dir, l, o, c))

    def set_live(self, which):
        cur = self.current()
        if cur == which:
            return
        if cur is not None:
            os.rename(self.live, os.path.join(self.dir, cur))
        os.rename(os.path.join(self.dir, which), self.live)

    def path_of(self, which):
        """Current filesystem path of the orig/changed tree."""
        return self.live if self.current() == which else os.path.join(self.dir, which)

    def prepare(self, log):
        gen_hash = file_sha256(CORPUS_PY)
        gen_version = generator_version(self.kind)
        if os.path.isfile(self.meta_path):
            with open(self.meta_path) as f:
                meta = json.load(f)
            cached_version = meta.get("generator_version") or \
                LEGACY_GENERATORS.get(meta.get("generator_sha256"), {}).get(self.kind)
            if cached_version == gen_version:
                try:
                    self.current()
                    self.meta = meta
                    log("corpus %s: cached in %s" % (self.id, self.dir))
                    self.set_live("orig")
                    return meta
                except RuntimeError as e:
                    log("corpus %s: %s -- regenerating" % (self.id, e))
            else:
                log("corpus %s: generated by a different corpus.py -- regenerating" % self.id)
        if os.path.exists(self.dir):
            shutil.rmtree(self.dir)
        os.makedirs(self.dir)
        t0 = time.monotonic()
        log("corpus %s: generating %d MiB %s corpus (seed %s) ..." % (
            self.id, self.size_mib, self.kind, self.seed))
        orig = run_corpus_py(["--out", os.path.join(self.dir, "orig"), "--kind", self.kind,
                              "--size-mib", str(self.size_mib), "--seed", str(self.seed)])
        # changed copy: hard-link clone, corpus.py --change copies a file before
        # modifying it, so unchanged files keep their inode/ctime/mtime
        subprocess.run(["cp", "-a", "--link", os.path.join(self.dir, "orig"),
                        os.path.join(self.dir, "changed")], check=True)
        change = run_corpus_py(["--out", os.path.join(self.dir, "changed"), "--change",
                                "--kind", self.kind, "--seed", str(self.seed)])
        meta = {"id": self.id, "kind": self.kind, "size_mib": self.size_mib, "seed": self.seed,
                "generator_sha256": gen_hash, "generator_version": gen_version,
                "orig": orig, "change": change,
                "created": datetime.datetime.now().isoformat(timespec="seconds"),
                "generation_s": round(time.monotonic() - t0, 1)}
        with open(self.meta_path + ".tmp", "w") as f:
            json.dump(meta, f, indent=2)
        os.replace(self.meta_path + ".tmp", self.meta_path)
        self.set_live("orig")
        self.meta = meta
        log("corpus %s: done in %.0f s (%d files, %.1f MiB; change: %.1f MiB)" % (
            self.id, meta["generation_s"], orig.get("files", 0), orig.get("bytes", 0) / MiB,
            change.get("changed_bytes", 0) / MiB))
        return meta

    def warm_up(self):
        """Read every file of both trees (cat > /dev/null) so every tool sees
        a warm page cache; dropping caches would need privileges."""
        buf = bytearray(MiB)
        n = 0
        for root, dirs, files in os.walk(self.dir):
            for name in files:
                try:
                    with open(os.path.join(root, name), "rb", buffering=0) as f:
                        while True:
                            k = f.readinto(buf)
                            if not k:
                                break
                            n += k
                except OSError:
                    pass
        return n


def manifest(top):
    """relpath -> (size, sha256) for files; relpath -> None for dirs."""
    m = {}
    for dirpath, dirnames, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        m[rel + "/"] = None
        for name in filenames:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                m[os.path.join(rel, name)] = ("symlink", os.readlink(p))
                continue
            with open(p, "rb") as f:
                m[os.path.join(rel, name)] = (os.fstat(f.fileno()).st_size,
                                              hashlib.file_digest(f, "sha256").hexdigest())
    return m


def verify_restore(target, live, expected):
    root = os.path.join(target, live.lstrip("/"))
    if not os.path.isdir(root):
        # fallback: some tools may restore the snapshot root directly
        found = None
        for dirpath, dirnames, filenames in os.walk(target):
            if os.path.basename(dirpath) == os.path.basename(live):
                found = dirpath
                break
            if dirpath.count(os.sep) - target.count(os.sep) > 12:
                dirnames[:] = []
        if found is None:
            return "restored tree not found under %s" % target
        root = found
    got = manifest(root)
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    differ = [k for k in expected if k in got and got[k] != expected[k]]
    if not (missing or extra or differ):
        return "ok"
    ex = (missing + differ + extra)[:3]
    return "MISMATCH: %d missing, %d extra, %d differ (e.g. %s)" % (
        len(missing), len(extra), len(differ), ", ".join(ex))


# ---------------------------------------------------------------------------
# machine description
# ---------------------------------------------------------------------------

def machine_info(workdir):
    info = {"hostname": socket.gethostname(), "kernel": platform.release(),
            "python": platform.python_version(), "nproc": os.cpu_count()}
    try:
        info["nproc_available"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["ram_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    info["os"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    try:
        p = subprocess.run(["df", "-T", "-P", workdir], capture_output=True, text=True)
        fields = p.stdout.splitlines()[1].split()
        info["workdir_fs"] = "%s on %s" % (fields[1], fields[0])
    except (OSError, IndexError):
        pass
    info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


# ---------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(runs, tools, reps):
    """-> {tool: {step: {...medians..., n_ok, n, status}}}"""
    out = {}
    for t in tools:
        out[t] = {}
        for s in STEPS:
            rs = [r for r in runs if r["tool"] == t and r["step"] == s]
            ok = [r for r in rs if r["status"] in OK_STATUSES]
            d = {"n": len(rs), "n_ok": len(ok)}
            if ok:
                d.update(wall_s=median([r.get("wall_s") for r in ok]),
                         cpu_s=median([r.get("cpu_s") for r in ok]),
                         max_rss_mib=median([r["max_rss_kib"] / 1024 if r.get("max_rss_kib") else None for r in ok]),
                         wall_min_s=min(r["wall_s"] for r in ok), wall_max_s=max(r["wall_s"] for r in ok))
            # repo size is meaningful even if the step itself failed
            d["repo_mib"] = median([r["repo_bytes"] / MiB if r.get("repo_bytes") is not None else None for r in rs])
            statuses = [r["status"] for r in rs]
            d["status"] = "ok" if ok and len(ok) == len(rs) else \
                ("partial" if ok else (max(set(statuses), key=statuses.count) if statuses else "n/a"))
            if s == "restore":
                d["verify"] = [r.get("verify") for r in rs]
                d["restore_disk_mib"] = median([r["restore_disk_bytes"] / MiB
                                                if r.get("restore_disk_bytes") is not None else None
                                                for r in ok])
                d["restore_apparent_mib"] = median([r["restore_apparent_bytes"] / MiB
                                                    if r.get("restore_apparent_bytes") is not None else None
                                                    for r in ok])
            out[t][s] = d
    return out


def ratios(summary, lb, peer):
    res = {}
    for s in STEPS:
        a, b = summary[lb][s], summary[peer][s]

        def r(x, y):
            return round(x / y, 3) if x and y else None
        res[s] = {
            "speed": r(b.get("wall_s"), a.get("wall_s")),        # peer time / lifeboat time
            "cpu": r(b.get("cpu_s"), a.get("cpu_s")),            # peer cpu / lifeboat cpu
            "rss": r(a.get("max_rss_mib"), b.get("max_rss_mib")),  # lifeboat / peer
            "repo": r(a.get("repo_mib"), b.get("repo_mib")),     # lifeboat / peer
        }
    return res


def fmt_num(x, kind):
    if x is None:
        return None
    if kind == "s":
        return "%.2f" % x if x < 10 else "%.1f" % x
    if kind == "mib":
        return "%.1f" % x if x < 100 else "%.0f" % x
    if kind == "ratio":
        return "%.2f" % x
    return str(x)


STATUS_CELL = {"unsupported": "n/a", "not installed": "n/a", "unavailable": "n/a",
               "failed": "fail", "timeout": "timeout", "skipped": "skip"}


def cell(d, key, kind):
    v = d.get(key)
    if v is None:
        return STATUS_CELL.get(d["status"], "–") if d["n_ok"] == 0 else "–"
    s = fmt_num(v, kind)
    if key != "repo_mib" and d["n_ok"] < d["n"]:
        s += " (%d/%d)" % (d["n_ok"], d["n"])
    return s


def render_markdown(report):
    L = []
    m = report["machine"]
    st = report["settings"]
    L.append("# lifeboat side-by-side benchmark")
    L.append("")
    L.append("Generated %s by `benches/compare.py`%s." % (
        report["finished"] or report["started"], " (**partial: run interrupted or still running**)"
        if not report["finished"] else ""))
    L.append("")
    L.append("## Machine")
    L.append("")
    L.append("| | |")
    L.append("|---|---|")
    L.append("| CPU | %s |" % m.get("cpu_model", "?"))
    L.append("| cores (nproc) | %s |" % m.get("nproc_available", m.get("nproc")))
    L.append("| RAM | %s GiB |" % m.get("ram_gib", "?"))
    L.append("| OS / kernel | %s / %s |" % (m.get("os", "?"), m.get("kernel", "?")))
    L.append("| work dir | `%s` (%s) |" % (st["workdir"], m.get("workdir_fs", "?")))
    L.append("| load average at start / end | %s / %s |" % (
        " ".join(map(str, m.get("loadavg_start", []))), " ".join(map(str, m.get("loadavg_end", [])))))
    for t, v in report["versions"].items():
        L.append("| %s | %s |" % (t, v.replace("|", "\\|")))
    L.append("")
    L.append("## Method")
    L.append("")
    L.append("- Steps: `init`, first `backup`, unchanged re-`backup`, `backup` after ~5% of the corpus "
             "changed, full `restore` into an empty directory, `check` with full data read "
             "(restic/rustic `check --read-data`, borg `check --verify-data`, lifeboat `check --read-data`).")
    L.append("- All tools back up the **same absolute path**; the changed corpus is swapped in by "
             "renaming directories, unchanged files keep inode/mtime/ctime (hard-link clone), so "
             "incremental backups see the change exactly as in real life.")
    L.append("- %d repetition(s); within a repetition all tools run step by step, interleaved, tool "
             "order rotated every repetition. Numbers are medians over successful repetitions; "
             "`(k/n)` marks a metric where only k of n repetitions succeeded." % st["reps"])
    L.append("- **Warm page cache**: caches are not dropped (needs privileges); instead the corpus "
             "(original and changed tree) is read once (`cat > /dev/null`) before each repetition. "
             "`sync` runs after every step, outside the measurement; timings therefore exclude "
             "write-back of data a tool did not fsync itself.")
    L.append("- wall = elapsed time of the process; CPU = user+sys (`/usr/bin/time -v`); RSS = peak "
             "resident set size (`Maximum resident set size`); repo = `du --apparent-size` of the "
             "repository directory after the step. Caches (restic/rustic cache, borg files/chunks "
             "cache) live outside the repo and are not counted.")
    L.append("- Ratios are lifeboat vs. the peer: **speed×** = peer wall / lifeboat wall "
             "(> 1: lifeboat faster), **RSS×** = lifeboat RSS / peer RSS (< 1: lifeboat leaner), "
             "**repo×** = lifeboat repo / peer repo (< 1: lifeboat smaller).")
    L.append("- Same host name `%s` for restic, rustic and lifeboat (`--host`); borg archives are "
             "named `%s-<step>`. borg uses `--encryption=repokey-blake2`; restic repository "
             "format and compression are the restic defaults of the installed version." % (HOST, HOST))
    L.append("")

    for kind, kr in report["kinds"].items():
        tools = kr["tools"]
        lb = "lifeboat"
        summ = kr.get("summary") or {}
        if not summ:
            continue
        meta = kr["corpus"]
        o, c = meta["orig"], meta["change"]
        L.append("## Corpus: %s" % kind)
        L.append("")
        if kind == "image":
            fs = o.get("filesystem", {})
            ops = c.get("ops", {})
            ow, nw = ops.get("overwrite", {}), ops.get("new", {})
            L.append("ext4 image of %.0f MiB (sparse, %.0f MiB allocated = %.0f %%), %d files / %.0f MiB "
                     "inside; change step: %.1f MiB overwritten in place in %s regions of 4 KiB-2 MiB, "
                     "%.1f MiB new data in %s regions written into free space (holes), image size "
                     "unchanged." % (
                         o.get("bytes", 0) / MiB, o.get("allocated_bytes", 0) / MiB,
                         100.0 * o.get("allocated_bytes", 0) / max(1, o.get("bytes", 1)),
                         fs.get("files", 0), fs.get("file_bytes", 0) / MiB,
                         ow.get("bytes", 0) / MiB, ow.get("regions", "?"),
                         nw.get("bytes", 0) / MiB, nw.get("regions", 0)))
        else:
            parts = o.get("parts", {})
            L.append("%d files, %.0f MiB (from /usr: %.0f MiB, random: %.0f MiB, text: %.0f MiB); "
                     "change step: %.1f MiB changed (%s)." % (
                         o.get("files", 0), o.get("bytes", 0) / MiB,
                         parts.get("usr", {}).get("bytes", 0) / MiB,
                         parts.get("random", {}).get("bytes", 0) / MiB,
                         parts.get("text", {}).get("bytes", 0) / MiB,
                         c.get("changed_bytes", 0) / MiB,
                         ", ".join("%s %d files/%.1f MiB" % (k, v.get("files", 0), v.get("bytes", 0) / MiB)
                                   for k, v in sorted(c.get("ops", {}).items()))))
        L.append("Seed `%s`, backed-up path `%s`. Digest orig `%s`, changed `%s`." % (
            meta["seed"], kr["live"], (o.get("digest") or "?")[:16], (c.get("digest") or "?")[:16]))
        L.append("")
        peers = [t for t in tools if t != lb] if lb in tools else []
        head = ["step"]
        for t in tools:
            head += ["%s wall s" % t, "%s CPU s" % t, "%s RSS MiB" % t, "%s repo MiB" % t]
        for p in peers:
            head += ["vs %s speed×" % p, "vs %s RSS×" % p, "vs %s repo×" % p]
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        rat = kr.get("ratios", {})
        for s in STEPS:
            row = [s]
            for t in tools:
                d = summ[t][s]
                row += [cell(d, "wall_s", "s"), cell(d, "cpu_s", "s"),
                        cell(d, "max_rss_mib", "mib"), cell(d, "repo_mib", "mib")]
            for p in peers:
                r = rat.get(p, {}).get(s, {})
                row += [fmt_num(r.get("speed"), "ratio") or "–",
                        fmt_num(r.get("rss"), "ratio") or "–",
                        fmt_num(r.get("repo"), "ratio") or "–"]
            L.append("| " + " | ".join(row) + " |")
        L.append("")
        # throughput of backups
        total = o.get("bytes", 0)
        L.append("Backup throughput (corpus MiB / median wall s): " + "; ".join(
            "%s %s" % (t, " / ".join(
                ("%.0f" % (total / MiB / summ[t][s]["wall_s"])) if summ[t][s].get("wall_s") else "–"
                for s in BACKUP_STEPS)) for t in tools) + " (1st / unchanged / changed).")
        L.append("")
        L.append("Restore verification (restored tree compared file by file with the changed corpus): " +
                 "; ".join("%s: %s" % (t, verify_summary(summ[t]["restore"].get("verify", [])))
                           for t in tools) + ".")
        L.append("")
        if kind == "image":
            chg = c.get("allocated_bytes", 0) + c.get("ops", {}).get("new", {}).get("bytes", 0)
            L.append("Restored size on disk (`du`, allocated / apparent MiB; the changed image has "
                     "%.0f MiB of non-zero blocks in %.0f MiB): " % (chg / MiB, o.get("bytes", 0) / MiB) +
                     "; ".join("%s %s / %s" % (
                         t, fmt_num(summ[t]["restore"].get("restore_disk_mib"), "mib") or "–",
                         fmt_num(summ[t]["restore"].get("restore_apparent_mib"), "mib") or "–")
                         for t in tools) + ".")
            L.append("")
        notes = kr.get("notes", [])
        fails = [r for r in kr["runs"] if r["status"] not in OK_STATUSES]
        if fails or notes:
            L.append("### Notes and failures (%s)" % kind)
            L.append("")
            for n in notes:
                L.append("- %s" % n)
            seen = set()
            for r in fails:
                key = (r["tool"], r["step"], r["status"])
                if key in seen:
                    continue
                seen.add(key)
                same = sum(1 for x in fails if (x["tool"], x["step"], x["status"]) == key)
                L.append("- **%s %s**: %s%s in %d rep(s)%s" % (
                    r["tool"], r["step"], r["status"],
                    " (rc %s)" % r["rc"] if r.get("rc") is not None else "", same,
                    ("; `%s`" % r.get("reason")) if r.get("reason") else ""))
                if r.get("stderr_tail"):
                    L.append("")
                    L.append("  ```")
                    for line in r["stderr_tail"].splitlines()[-8:]:
                        L.append("  " + line[:300])
                    L.append("  ```")
            L.append("")
    L.append("Raw data: `%s`." % os.path.basename(report["json_path"]))
    L.append("")
    return "\n".join(L)


def verify_summary(vs):
    vs = [v for v in vs if v]
    if not vs:
        return "–"
    ok = sum(1 for v in vs if v == "ok")
    bad = [v for v in vs if v and v != "ok"]
    s = "%d/%d ok" % (ok, len(vs))
    if bad:
        s += " (%s)" % bad[0]
    return s


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lifeboat", default="target/release/lifeboat",
                    help="lifeboat binary (relative paths: to the cwd, else to the repo root)")
    ap.add_argument("--kind", default=None, help="corpus kind(s), comma separated: mixed,image (default mixed)")
    ap.add_argument("--size-mib", type=int, default=None, help="corpus size in MiB (default 2048, smoke 64)")
    ap.add_argument("--seed", default="1", help="corpus seed (default 1)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3, smoke 1)")
    ap.add_argument("--workdir", default="/var/tmp/lifeboat-bench",
                    help="corpora, repositories, restores, logs (default %(default)s)")
    ap.add_argument("--out", default=None, help="Markdown output file (raw JSON next to it)")
    ap.add_argument("--tools", default="lifeboat,restic,borg-lz4,borg-zstd3,rustic",
                    help="tools to run if available (default: %(default)s)")
    ap.add_argument("--timeout", type=int, default=3 * 3600, help="per-step timeout in seconds")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny CI run: 64 MiB mixed corpus, 1 repetition")
    ap.add_argument("--no-verify", action="store_true", help="skip restore verification")
    ap.add_argument("--keep", action="store_true", help="keep repositories of the last repetition")
    ap.add_argument("--prepare-only", action="store_true", help="only generate/cache the corpora")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 if any lifeboat step failed (unsupported steps excepted) "
                         "or a lifeboat restore did not verify")
    a = ap.parse_args(argv)

    kinds = [k.strip() for k in (a.kind or "mixed").split(",") if k.strip()]
    for k in kinds:
        if k not in ("mixed", "image"):
            ap.error("unknown kind %r" % k)
    size = a.size_mib if a.size_mib is not None else (64 if a.smoke else 2048)
    reps = a.reps if a.reps is not None else (1 if a.smoke else 3)
    if reps < 1:
        ap.error("--reps must be >= 1")
    workdir = os.path.abspath(a.workdir)
    os.makedirs(workdir, exist_ok=True)
    lockf = open(os.path.join(workdir, ".lock"), "w")
    try:
        fcntl.flock(lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        ap.error("another compare.py is using %s (lock %s)" % (workdir, lockf.name))
    out_md = os.path.abspath(a.out or os.path.join(HERE, "out", "results-%s.md" % "-".join(kinds)))
    out_json = os.path.splitext(out_md)[0] + ".json"
    os.makedirs(os.path.dirname(out_md), exist_ok=True)

    def log(msg):
        sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
        sys.stderr.flush()

    lb_path = a.lifeboat
    if not os.path.isabs(lb_path) and not os.path.exists(lb_path):
        lb_path = os.path.join(REPO_ROOT, lb_path)
    lb_path = os.path.abspath(lb_path)

    all_tools = {"lifeboat": Lifeboat(lb_path), "restic": Restic(),
                 "borg-lz4": Borg("lz4", "borg-lz4"), "borg-zstd3": Borg("zstd,3", "borg-zstd3"),
                 "rustic": Rustic()}
    wanted = [t.strip() for t in a.tools.split(",") if t.strip()]
    for t in wanted:
        if t not in all_tools:
            ap.error("unknown tool %r (known: %s)" % (t, ", ".join(all_tools)))
    # lifeboat always has a column (n/a if missing); peers only when installed
    tools = [t for t in wanted if t == "lifeboat" or all_tools[t].available()]
    skipped_peers = [t for t in wanted if t not in tools]
    if skipped_peers:
        log("not installed, skipped: %s" % ", ".join(skipped_peers))
    if not TIME_BIN:
        log("warning: /usr/bin/time not found (apt-get install time); using rusage of the child")

    corpora = {k: Corpus(workdir, k, size, a.seed) for k in kinds}
    for k in kinds:
        corpora[k].prepare(log)
    if a.prepare_only:
        return 0

    free = shutil.disk_usage(workdir).free
    need = size * MiB * (len(tools) + 1) * 1.3
    if free < need:
        log("warning: %.1f GiB free in %s, about %.1f GiB may be needed" % (
            free / 2**30, workdir, need / 2**30))

    report = {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "finished": None,
        "machine": machine_info(workdir),
        "versions": {t: all_tools[t].version() for t in tools},
        "settings": {"reps": reps, "size_mib": size, "seed": a.seed, "kinds": kinds,
                     "workdir": workdir, "tools": tools, "skipped_peers": skipped_peers,
                     "timeout_s": a.timeout, "verify_restore": not a.no_verify,
                     "host": HOST, "time_bin": TIME_BIN, "warm_cache": True,
                     "smoke": a.smoke},
        "json_path": out_json,
        "kinds": {},
    }
    if skipped_peers:
        report["versions"].update({t: "not installed (skipped)" for t in skipped_peers})
    for t, v in report["versions"].items():
        log("%-11s %s" % (t, v))

    def save():
        report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        for kind, kr in report["kinds"].items():
            kr["summary"] = summarize(kr["runs"], kr["tools"], reps)
            kr["ratios"] = {p: ratios(kr["summary"], "lifeboat", p)
                            for p in kr["tools"] if p != "lifeboat"} if "lifeboat" in kr["tools"] else {}
        with open(out_json + ".tmp", "w") as f:
            json.dump(report, f, indent=2)
        os.replace(out_json + ".tmp", out_json)
        with open(out_md + ".tmp", "w") as f:
            f.write(render_markdown(report))
        os.replace(out_md + ".tmp", out_md)

    strict_fail = False
    interrupted = False
    try:
        for kind in kinds:
            corpus = corpora[kind]
            kr = {"corpus": corpus.meta, "live": corpus.live, "tools": tools, "runs": [], "notes": []}
            report["kinds"][kind] = kr
            corpus_bytes = corpus.meta["orig"].get("bytes") or size * MiB
            if kind == "image":
                corpus_bytes = corpus.meta["orig"].get("allocated_bytes") or corpus_bytes
            expected = None
            if not a.no_verify:
                corpus.set_live("orig")
                log("%s: hashing the changed corpus for restore verification" % kind)
                expected = manifest(corpus.path_of("changed"))
            for rep in range(reps):
                order = tools[rep % len(tools):] + tools[:rep % len(tools)]
                log("%s: repetition %d/%d, order: %s" % (kind, rep + 1, reps, ", ".join(order)))
                base = os.path.join(workdir, "run")
                for d in ("repos", "home", "restore"):
                    shutil.rmtree(os.path.join(base, d), ignore_errors=True)
                    os.makedirs(os.path.join(base, d))
                logdir = os.path.join(workdir, "logs", kind, "rep%d" % (rep + 1))
                shutil.rmtree(logdir, ignore_errors=True)
                os.makedirs(logdir)
                corpus.set_live("orig")
                t0 = time.monotonic()
                n = corpus.warm_up()
                os.sync()
                log("%s: warm-up read of %.0f MiB in %.1f s" % (kind, n / MiB, time.monotonic() - t0))
                state = {t: {"init_ok": None, "snapshots": 0} for t in tools}
                for step in STEPS:
                    if step == "backup-changed":
                        corpus.set_live("changed")
                    for t in order:
                        tool = all_tools[t]
                        rec = {"kind": kind, "rep": rep + 1, "tool": t, "step": step}
                        repo = os.path.join(base, "repos", t)
                        home = os.path.join(base, "home", t)
                        target = os.path.join(base, "restore", t)
                        os.makedirs(home, exist_ok=True)
                        if not tool.available():
                            rec.update(status="unavailable", reason=tool.reason or "not installed")
                            kr["runs"].append(rec)
                            if t == "lifeboat":
                                strict_fail = True
                            continue
                        if step != "init" and state[t]["init_ok"] is False:
                            rec.update(status="skipped", reason="init failed")
                            kr["runs"].append(rec)
                            continue
                        if step == "restore":
                            shutil.rmtree(target, ignore_errors=True)
                            os.makedirs(target)
                        try:
                            argv, cwd = tool.cmd(step, repo, corpus.live, target, state[t])
                            rec["cmd"] = " ".join(argv)
                            if cwd:
                                rec["cwd"] = cwd
                            env = tool.env(home)
                            res = run_measured(argv, cwd, env, os.path.join(logdir, "%s-%s" % (t, step)),
                                               a.timeout)
                            rec.update(res)
                            errf = os.path.join(logdir, "%s-%s.err" % (t, step))
                            if res["timed_out"]:
                                rec["status"] = "timeout"
                            elif res["rc"] == 0:
                                rec["status"] = "ok"
                            elif tool.warning_rc(step, res["rc"]):
                                rec["status"] = "warning"
                            else:
                                errt = tail(errf, 40) + "\n" + tail(os.path.join(logdir, "%s-%s.out" % (t, step)), 10)
                                rec["status"] = "unsupported" if UNSUPPORTED_RE.search(errt) else "failed"
                            if rec["status"] not in OK_STATUSES or tool.warning_rc(step, res["rc"]):
                                rec["stderr_tail"] = tail(errf)
                            os.sync()
                            rec["repo_bytes"] = du_bytes(repo)
                            rec["repo_disk_bytes"] = du_bytes(repo, apparent=False)
                            rec["cache_bytes"] = du_bytes(home)
                            # an exit status of 0 alone proves nothing (e.g. a stub binary)
                            if rec["status"] in OK_STATUSES:
                                if step == "init" and not os.path.exists(repo):
                                    rec.update(status="failed", reason="exited 0 but created no repository")
                                elif step == "backup-1st" and (rec["repo_bytes"] or 0) < 0.05 * corpus_bytes:
                                    rec.update(status="failed", reason="exited 0 but the repository holds only "
                                               "%.1f MiB for a %.0f MiB corpus" % (
                                                   (rec["repo_bytes"] or 0) / MiB, corpus_bytes / MiB))
                            if step == "init":
                                state[t]["init_ok"] = rec["status"] in OK_STATUSES
                            if step in BACKUP_STEPS and rec["status"] in OK_STATUSES:
                                if "pending_archive" in state[t]:
                                    state[t]["last_archive"] = state[t].pop("pending_archive")
                                # sanity check for lifeboat only: the peers are trusted
                                # references and listing costs time (borg list ~0.5 s)
                                sc = tool.snapshots_cmd(repo) if t == "lifeboat" else None
                                if sc:
                                    try:
                                        p = subprocess.run(sc, env=env, capture_output=True, text=True,
                                                           timeout=600, stdin=subprocess.DEVNULL)
                                        cnt = count_snapshots(json.loads(p.stdout)) if p.returncode == 0 else None
                                    except (ValueError, OSError, subprocess.SubprocessError):
                                        cnt = None
                                    rec["snapshots"] = cnt
                                    if cnt is None:
                                        kr["notes"].append("rep %d: %s: could not count snapshots after %s "
                                                           "(`%s` failed or printed no JSON)" % (
                                                               rep + 1, t, step, " ".join(sc[1:])))
                                    elif cnt <= state[t]["snapshots"]:
                                        rec.update(status="failed", reason="exited 0 but no new snapshot is "
                                                   "listed (%d before, %d after)" % (state[t]["snapshots"], cnt))
                                    if cnt is not None:
                                        state[t]["snapshots"] = cnt
                            if step == "restore":
                                # allocated vs apparent size of what was restored: shows
                                # whether a sparse image came back sparse
                                if rec["status"] in OK_STATUSES:
                                    rec["restore_disk_bytes"] = du_bytes(target, apparent=False)
                                    rec["restore_apparent_bytes"] = du_bytes(target)
                                if rec["status"] in OK_STATUSES and expected is not None:
                                    rec["verify"] = verify_restore(target, corpus.live, expected)
                                    if rec["verify"] != "ok":
                                        rec.update(status="failed", reason="restored data wrong: " + rec["verify"])
                                elif rec["status"] in OK_STATUSES:
                                    rec["verify"] = "skipped"
                                else:
                                    rec["verify"] = "restore failed"
                                shutil.rmtree(target, ignore_errors=True)
                                os.sync()
                        except Exception as ex:   # never abort the whole run for one step
                            rec.update(status="failed", reason="harness error: %r" % ex)
                        kr["runs"].append(rec)
                        if t == "lifeboat" and (rec["status"] in ("failed", "timeout", "unavailable") or
                                                (rec.get("verify") not in (None, "ok", "skipped"))):
                            strict_fail = True
                        log("%s rep%d %-16s %-10s %-9s %s%s" % (
                            kind, rep + 1, step, t, rec["status"],
                            "wall %.2fs cpu %.2fs rss %.0fMiB repo %.1fMiB" % (
                                rec.get("wall_s") or 0, rec.get("cpu_s") or 0,
                                (rec.get("max_rss_kib") or 0) / 1024, (rec.get("repo_bytes") or 0) / MiB)
                            if "wall_s" in rec else rec.get("reason", ""),
                            (" verify=%s" % rec["verify"]) if "verify" in rec else ""))
                corpus.set_live("orig")
                if not a.keep or rep + 1 < reps:
                    shutil.rmtree(os.path.join(base, "repos"), ignore_errors=True)
                    shutil.rmtree(os.path.join(base, "home"), ignore_errors=True)
                save()
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted -- writing partial results")
    finally:
        for c in corpora.values():
            try:
                c.set_live("orig")
            except Exception:
                pass
    if not interrupted:
        report["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    save()
    log("wrote %s and %s" % (out_md, out_json))
    if interrupted:
        return 130
    if a.strict and strict_fail:
        log("--strict: lifeboat had failing steps")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
