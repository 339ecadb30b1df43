#!/usr/bin/env python3
"""s3_compare.py - lifeboat backup/restore against a local S3 server, side by side with a plain
parallel multipart upload/download of the same bytes by the AWS CLI (v1, from PyPI).

    python3 benches/s3_compare.py                      # 1 GiB, 3 repetitions, diagnostics, ~10 min
    python3 benches/s3_compare.py --size-mib 256 --reps 1 --no-diag   # quick look

Target (S3 issue): lifeboat backup and restore reach >= 80 % of the CLI's throughput.

What it does (details in benches/README.md, section "S3: lifeboat vs AWS CLI"):

* starts a private radosgw with tests/harness/s3-up.sh (own state directory and ports) and
  recreates it empty before every tool's upload, because radosgw frees deleted data only after
  its 2 h garbage-collection delay and its 4 GiB memstore would fill up (`--shared-server` uses
  the server of AWS_ENDPOINT_URL instead, which is never stopped);
* installs awscli into a venv under /var/tmp (`--aws PATH` to use another one) and writes a
  private AWS_CONFIG_FILE: max_concurrent_requests = lifeboat's concurrency (8),
  multipart_chunksize 16MB, multipart_threshold 32MB (both lifeboat's), addressing_style path;
* generates a deterministic, incompressible data set (random files of log-uniform 1-64 MiB,
  seeded), cached in the work directory with a SHA-256 manifest;
* per repetition, tools alternate (CLI first on even repetitions, lifeboat first on odd ones);
  each tool does upload then download into its own fresh bucket, which is deleted afterwards
  (radosgw's memstore holds only 4 GiB):
    CLI:      aws s3 cp --recursive --quiet DIR s3://B/data   /  aws s3 cp --recursive s3://B/data OUT
    lifeboat: lifeboat -r s3://B/repo backup DIR              /  lifeboat -r s3://B/repo restore latest -t OUT
  (bucket creation and `lifeboat init` are not timed); every step runs under /usr/bin/time -v;
  the harness also samples the CPU time of radosgw and ceph-osd and of the whole machine;
* every download/restore is compared file by file (size + SHA-256) with the manifest;
* diagnostics (`--no-diag` skips): lifeboat with LIFEBOAT_S3_CONCURRENCY=1 and =32 and with
  LIFEBOAT_S3_CHECKSUM=crc32c (no MD5 per upload), the CLI with
  max_concurrent_requests=1 (does concurrency matter?), a lifeboat backup into a local repository
  (lifeboat's own speed without S3), and a system-wide `perf record` of one lifeboat backup and
  one restore (who burns the CPU: lifeboat, radosgw, ceph-osd? which functions in lifeboat?).

Writes benches/out/s3-compare.json and benches/out/s3-compare.md (`--out-prefix`).
Standard library only (plus the AWS CLI it installs).
"""

import argparse
import hashlib
import json
import math
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20
GENERATOR_VERSION = 1  # bump when the bytes the data set generator produces change
HOST = "s3bench"
LIFEBOAT_CONCURRENCY = 8  # lifeboat's default objects in flight (S3Options::default)
PART_MIB = 16  # lifeboat's part size (S3Options::default)
THRESHOLD_MIB = 32  # lifeboat's multipart threshold (S3Options::default)


def log(*a):
    print("[s3_compare %s]" % time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ data set -----------------
def gen_dataset(root: Path, size_mib: int, seed: str) -> dict:
    """Random files of log-uniform sizes 1-64 MiB (whole KiB) until size_mib is reached; the
    last file is cut to hit the total exactly. Deterministic in (seed, size_mib)."""
    manifest_path = root / "manifest.json"
    want = {"generator": GENERATOR_VERSION, "size_mib": size_mib, "seed": seed}
    if manifest_path.exists():
        try:
            m = json.loads(manifest_path.read_text())
            if all(m.get(k) == v for k, v in want.items()) and all(
                (root / "data" / f["path"]).stat().st_size == f["size"] for f in m["files"]
            ):
                log(f"data set cached in {root}/data ({len(m['files'])} files, digest {m['digest'][:16]})")
                return m
        except (OSError, ValueError, KeyError):
            pass
    log(f"generating {size_mib} MiB data set in {root}/data (seed {seed!r})")
    if root.exists():
        shutil.rmtree(root)
    data = root / "data"
    data.mkdir(parents=True)
    total = size_mib * MIB
    files, left, i = [], total, 0
    while left > 0:
        r = random.Random(f"{seed}:s3bench:size:{i}")
        size = int(math.exp(r.uniform(math.log(1 * MIB), math.log(64 * MIB)))) // 1024 * 1024
        size = min(size, left)
        rel = f"d{i % 4}/f{i:04d}.bin"
        p = data / rel
        p.parent.mkdir(exist_ok=True)
        rb = random.Random(f"{seed}:s3bench:bytes:{i}")
        h = hashlib.sha256()
        with open(p, "wb") as f:
            done = 0
            while done < size:
                n = min(MIB, size - done)
                b = rb.randbytes(n)
                h.update(b)
                f.write(b)
                done += n
        files.append({"path": rel, "size": size, "sha256": h.hexdigest()})
        left -= size
        i += 1
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f['path']}\0{f['size']}\0{f['sha256']}\n".encode())
    m = dict(want, files=files, total_bytes=total, digest=digest.hexdigest())
    manifest_path.write_text(json.dumps(m, indent=1))
    subprocess.run(["sync"])
    log(f"generated {len(files)} files, digest {m['digest'][:16]}")
    return m


def verify_tree(top: Path, manifest: dict) -> str | None:
    """None if `top` holds exactly the manifest's files with their sizes and SHA-256."""
    want = {f["path"]: f for f in manifest["files"]}
    have = set()
    for dirpath, _, names in os.walk(top):
        for n in names:
            have.add(os.path.relpath(os.path.join(dirpath, n), top))
    if have != set(want):
        extra, missing = sorted(have - set(want)), sorted(set(want) - have)
        return f"file set differs: {len(missing)} missing {missing[:3]}, {len(extra)} extra {extra[:3]}"
    for rel, f in want.items():
        p = top / rel
        if p.stat().st_size != f["size"]:
            return f"{rel}: size {p.stat().st_size} != {f['size']}"
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            while b := fh.read(4 * MIB):
                h.update(b)
        if h.hexdigest() != f["sha256"]:
            return f"{rel}: SHA-256 differs"
    return None


def warm(path: Path):
    for dirpath, _, names in os.walk(path):
        for n in names:
            with open(os.path.join(dirpath, n), "rb") as f:
                while f.read(8 * MIB):
                    pass


# ------------------------------------------------------------------ measuring ----------------
CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK  # utime, stime
    except (OSError, IndexError, ValueError):
        return None


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / CLK, sum(v[:8]) / CLK


def server_pids(state_dir: Path) -> dict:
    pids = {}
    for name, f in (("radosgw", "client.rgw.lifeboat.pid"), ("ceph-osd", "osd.0.pid"), ("ceph-mon", "mon.a.pid")):
        try:
            pids[name] = int((state_dir / "run" / f).read_text().strip())
        except (OSError, ValueError):
            pass
    return pids


def parse_time_v(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        for key, pat in (("user", "User time (seconds): "), ("sys", "System time (seconds): "),
                         ("rss_kib", "Maximum resident set size (kbytes): ")):
            if line.startswith(pat):
                out[key] = float(line[len(pat):])
    if "user" in out and "sys" in out:
        out["cpu"] = round(out["user"] + out["sys"], 2)
    if "rss_kib" in out:
        out["rss_mib"] = round(out["rss_kib"] / 1024, 1)
    return out


class Runner:
    def __init__(self, args, env, logdir: Path, pids: dict):
        self.args, self.env, self.logdir, self.pids = args, env, logdir, pids
        self.n = 0

    def run(self, name: str, cmd: list, env_extra=None, timed=True, check=True, wrap=None) -> dict:
        """Runs cmd under /usr/bin/time -v; returns the measurement."""
        self.n += 1
        env = dict(self.env, **(env_extra or {}))
        tfile = self.logdir / f"{self.n:03d}-{name}.time"
        out_f = self.logdir / f"{self.n:03d}-{name}.out"
        full = ["/usr/bin/time", "-v", "-o", str(tfile)] + [str(c) for c in cmd]
        if wrap:
            full = wrap + full
        srv0 = {k: proc_cpu(p) for k, p in self.pids.items()}
        m0 = machine_cpu()
        t0 = time.monotonic()
        with open(out_f, "wb") as fo:
            p = subprocess.run(full, env=env, stdout=fo, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               timeout=self.args.timeout)
        wall = time.monotonic() - t0
        m1 = machine_cpu()
        srv1 = {k: proc_cpu(p) for k, p in self.pids.items()}
        r = {"name": name, "cmd": " ".join(str(c) for c in cmd), "rc": p.returncode, "wall": round(wall, 3)}
        try:
            r.update(parse_time_v(tfile.read_text()))
        except OSError:
            pass
        r["server_cpu"] = {k: round(srv1[k] - srv0[k], 2) for k in srv0 if srv0[k] is not None and srv1.get(k) is not None}
        r["machine_busy_cores"] = round((m1[0] - m0[0]) / wall, 2) if wall > 0 else None
        if p.returncode != 0:
            tail = out_f.read_bytes()[-1500:].decode(errors="replace")
            r["error"] = tail
            log(f"{name}: exit {p.returncode}: {tail}")
            if check:
                raise RuntimeError(f"{name} failed (exit {p.returncode}), see {out_f}")
        subprocess.run(["sync"])
        if timed:
            log(f"{name}: {wall:.2f} s wall, cpu {r.get('cpu')} s, rss {r.get('rss_mib')} MiB, "
                f"server cpu {r['server_cpu']}, machine busy {r['machine_busy_cores']} cores")
        return r


def quiet(cmd, env, check=True) -> str:
    p = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))}: exit {p.returncode}: {p.stderr[-1500:]}")
    return p.stdout


# ------------------------------------------------------------------ setup --------------------
def s3_env(args) -> dict:
    """The AWS_* variables of the server: a private radosgw (default; its own state directory and
    ports, so that other users of the shared test server neither fill its 4 GiB memstore nor load
    it during the measurement), or with --shared-server the one AWS_ENDPOINT_URL names (else the
    default one of s3-up.sh)."""
    env = dict(os.environ)
    if args.shared_server and env.get("AWS_ENDPOINT_URL"):
        return env
    up_env = dict(env)
    if not args.shared_server:
        up_env.update(LIFEBOAT_S3_DIR=args.server_dir, LIFEBOAT_S3_PORT=str(args.server_port),
                      LIFEBOAT_S3_MON_PORT=str(args.server_mon_port))
    log(f"starting/locating the radosgw (tests/harness/s3-up.sh, state {up_env.get('LIFEBOAT_S3_DIR', 'default')})")
    for attempt in range(3):  # a just-stopped cluster's ports may still be busy for a moment
        p = subprocess.run([str(REPO_ROOT / "tests/harness/s3-up.sh")], capture_output=True, text=True, env=up_env)
        if p.returncode == 0:
            break
        log(f"s3-up.sh failed (attempt {attempt + 1}): {p.stderr[-800:]}")
        time.sleep(5)
    else:
        raise RuntimeError("s3-up.sh failed 3 times")
    out = p.stdout
    for line in out.splitlines():
        m = re.match(r"export (\w+)=(.*)$", line.strip())
        if m:
            env[m.group(1)] = m.group(2).strip("'\"")
    env.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    env.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
    return env


def fresh_private_server(args, R):
    """radosgw never frees deleted data at once (tails go to its garbage collector, which waits
    2 h), so the 4 GiB memstore fills up after a few GiB of uploads even though every bucket is
    deleted. A private server is therefore recreated, empty, before every tool's upload: stopping
    the memstore OSD drops its data and s3-up.sh creates a new cluster (~3 s, not timed)."""
    stop_private_server(Path(args.server_dir))
    env = s3_env(args)
    R.env.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    R.pids = server_pids(Path(args.server_dir))


def stop_private_server(state_dir: Path):
    """Stops the daemons of our private cluster by their pid files (never the shared one)."""
    for name in ("client.rgw.lifeboat", "osd.0", "mon.a"):
        f = state_dir / "run" / f"{name}.pid"
        try:
            pid = int(f.read_text().strip())
            exe = os.readlink(f"/proc/{pid}/exe")
        except (OSError, ValueError):
            continue
        if exe.split(" (")[0].rsplit("/", 1)[-1] in ("radosgw", "ceph-osd", "ceph-mon"):
            os.kill(pid, 15)
            for _ in range(100):
                if not os.path.exists(f"/proc/{pid}"):
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, 9)


def radosgw_version() -> str:
    cache = Path(os.environ.get("LIFEBOAT_CACHE", "/var/cache/lifeboat-test"))
    try:
        for line in (cache / "ceph-root/.lifeboat-packages").read_text().splitlines():
            if line.startswith("Package: radosgw "):
                return line
    except OSError:
        pass
    return "n/a"


def ensure_aws(args) -> Path:
    if args.aws:
        return Path(args.aws)
    venv = Path(args.venv)
    aws = venv / "bin" / "aws"
    if not aws.exists():
        log(f"installing awscli into {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin/pip"), "install", "-q", "awscli"], check=True)
    return aws


def aws_config(aws: Path, env: dict, path: Path, concurrency: int):
    e = dict(env, AWS_CONFIG_FILE=str(path))
    if path.exists():
        path.unlink()
    for k, v in (("default.region", env.get("AWS_REGION", "us-east-1")),
                 ("default.s3.max_concurrent_requests", str(concurrency)),
                 ("default.s3.multipart_chunksize", f"{PART_MIB}MB"),
                 ("default.s3.multipart_threshold", f"{THRESHOLD_MIB}MB"),
                 ("default.s3.addressing_style", "path")):
        quiet([aws, "configure", "set", k, v], e)


def bucket_bytes(aws, env, endpoint, bucket) -> dict:
    """Total bytes and objects in a bucket, and per top-level directory below the prefix."""
    out = quiet([aws, "--endpoint-url", endpoint, "s3", "ls", "--recursive", f"s3://{bucket}/"], env)
    total, n, per = 0, 0, {}
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[2].isdigit():
            size = int(parts[2])
            total += size
            n += 1
            comps = parts[3].split("/")
            d = comps[1] if len(comps) > 2 else comps[-1]
            per[d] = per.get(d, 0) + size
    return {"bytes": total, "objects": n, "by_dir": per}


def drop_bucket(aws, env, endpoint, bucket):
    p = subprocess.run([str(aws), "--endpoint-url", endpoint, "s3", "rb", "--force", f"s3://{bucket}"],
                       env=env, capture_output=True, text=True)
    if p.returncode != 0 and "NoSuchBucket" not in p.stderr:
        log(f"warning: could not delete bucket {bucket}: {p.stderr[-300:]}")


# ------------------------------------------------------------------ steps --------------------
def cli_pair(R, a, ctx, bucket, tag, conc_cfg=None, download=True) -> dict:
    aws, env, ep = ctx["aws"], ctx["env"], ctx["endpoint"]
    cfg_env = {"AWS_CONFIG_FILE": str(conc_cfg or ctx["aws_cfg"])}
    quiet([aws, "--endpoint-url", ep, "s3", "mb", f"s3://{bucket}"], dict(env, **cfg_env))
    res = {}
    try:
        res["upload"] = R.run(f"{tag}-cli-upload", [aws, "--endpoint-url", ep, "s3", "cp", "--recursive", "--quiet",
                                                    ctx["data"], f"s3://{bucket}/data"], cfg_env)
        res["upload"]["stored"] = bucket_bytes(aws, dict(env, **cfg_env), ep, bucket)
        if download:
            out = ctx["restore_dir"]
            shutil.rmtree(out, ignore_errors=True)
            res["download"] = R.run(f"{tag}-cli-download", [aws, "--endpoint-url", ep, "s3", "cp", "--recursive",
                                                            "--quiet", f"s3://{bucket}/data", out], cfg_env)
            res["download"]["verify"] = verify_tree(out, ctx["manifest"]) or "ok"
            if res["download"]["verify"] != "ok":
                log(f"{tag} CLI download VERIFY FAILED: {res['download']['verify']}")
            shutil.rmtree(out, ignore_errors=True)
    finally:
        drop_bucket(aws, env, ep, bucket)
    return res


def lifeboat_pair(R, a, ctx, bucket, tag, env_extra=None, download=True, wrap_backup=None, wrap_restore=None) -> dict:
    aws, env, ep, lb = ctx["aws"], ctx["env"], ctx["endpoint"], ctx["lifeboat"]
    repo = f"s3://{bucket}/repo"
    cache = ctx["work"] / "xdg" / tag
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    e = dict(env_extra or {}, XDG_CACHE_HOME=str(cache))
    res = {}
    try:
        R.run(f"{tag}-lifeboat-init", [lb, "-r", repo, "init"], e, timed=False)
        res["upload"] = R.run(f"{tag}-lifeboat-backup", [lb, "-r", repo, "backup", ctx["data"], "--host", HOST], e,
                              wrap=wrap_backup)
        res["upload"]["stored"] = bucket_bytes(aws, env, ep, bucket)
        if download:
            out = ctx["restore_dir"]
            shutil.rmtree(out, ignore_errors=True)
            res["download"] = R.run(f"{tag}-lifeboat-restore", [lb, "-r", repo, "restore", "latest", "-t", out], e,
                                    wrap=wrap_restore)
            res["download"]["verify"] = verify_tree(Path(str(out) + str(ctx["data"])), ctx["manifest"]) or "ok"
            if res["download"]["verify"] != "ok":
                log(f"{tag} lifeboat restore VERIFY FAILED: {res['download']['verify']}")
            shutil.rmtree(out, ignore_errors=True)
    finally:
        drop_bucket(aws, env, ep, bucket)
    return res


def perf_wrap(path: Path):
    return ["perf", "record", "-a", "-F", "499", "-q", "-o", str(path), "--"]


def perf_summary(path: Path, outdir: Path, name: str, pids: dict) -> dict:
    """Share of all samples per process (radosgw, ceph-osd, lifeboat, ...) and lifeboat's
    hottest symbols, from a system-wide `perf record`."""
    res = {}
    p = subprocess.run(["perf", "script", "-i", str(path), "-F", "comm,pid"], capture_output=True, text=True)
    by_pid, comms = {}, {}
    for line in p.stdout.splitlines():
        m = re.match(r"\s*(.*?)\s+(\d+)\s*$", line)
        if not m:
            continue
        comm, pid = m.group(1), int(m.group(2))
        by_pid[pid] = by_pid.get(pid, 0) + 1
        comms.setdefault(pid, {}).setdefault(comm, 0)
        comms[pid][comm] += 1
    names = {v: k for k, v in pids.items()}
    total = sum(by_pid.values()) or 1
    agg = {}
    for pid, n in by_pid.items():
        if pid in names:
            label = names[pid]
        elif pid == 0:
            label = "idle/kernel (pid 0)"
        else:
            top = max(comms[pid], key=comms[pid].get)
            label = "lifeboat" if set(comms[pid]) & set(LIFEBOAT_COMMS) else top
        agg[label] = agg.get(label, 0) + n
    res["by_process"] = [f"{100 * n / total:5.1f}%  {k}" for k, n in sorted(agg.items(), key=lambda x: -x[1])][:12]
    res["samples"] = total
    only_lb = ["--comms", ",".join(LIFEBOAT_COMMS), "--percentage", "relative"]  # % of lifeboat's samples
    for key, sort, extra in (("by_comm", "comm", []), ("lifeboat_sym", "sym", only_lb), ("lifeboat_thread", "comm", only_lb)):
        cmd = ["perf", "report", "-i", str(path), "--stdio", "--no-children", "--sort", sort, "--percent-limit", "1.5"] + extra
        p = subprocess.run(cmd, capture_output=True, text=True)
        (outdir / f"{name}.{key}.txt").write_text(p.stdout)
        res[key] = [l for l in p.stdout.splitlines() if l.strip() and not l.startswith("#")][:25]
    (outdir / f"{name}.by_process.txt").write_text("\n".join(res["by_process"]) + "\n")
    return res


LIFEBOAT_COMMS = ["lifeboat", "tokio-rt-worker", "seal-0", "seal-1", "seal-2", "seal-3", "packer"]


# ------------------------------------------------------------------ report -------------------
def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None


def summarize(reps: list, total_bytes: int) -> dict:
    s = {}
    for step in ("upload", "download"):
        s[step] = {}
        for tool in ("cli", "lifeboat"):
            ms = [r[tool][step] for r in reps if step in r.get(tool, {}) and r[tool][step]["rc"] == 0]
            if not ms:
                continue
            wall = med([m["wall"] for m in ms])
            s[step][tool] = {
                "n": len(ms), "wall": wall, "wall_min": min(m["wall"] for m in ms), "wall_max": max(m["wall"] for m in ms),
                "mib_s": round(total_bytes / MIB / wall, 1),
                "cpu": med([m.get("cpu") for m in ms]), "rss_mib": med([m.get("rss_mib") for m in ms]),
                "radosgw_cpu": med([m["server_cpu"].get("radosgw") for m in ms]),
                "osd_cpu": med([m["server_cpu"].get("ceph-osd") for m in ms]),
                "machine_busy_cores": med([m.get("machine_busy_cores") for m in ms]),
                "stored_bytes": med([m.get("stored", {}).get("bytes") for m in ms]),
                "verify": [m.get("verify") for m in ms],
            }
        if "cli" in s[step] and "lifeboat" in s[step]:
            s[step]["ratio"] = round(s[step]["cli"]["wall"] / s[step]["lifeboat"]["wall"], 3)
            paired = [r["cli"][step]["wall"] / r["lifeboat"][step]["wall"] for r in reps
                      if r.get("cli", {}).get(step, {}).get("rc") == 0 and r.get("lifeboat", {}).get(step, {}).get("rc") == 0]
            s[step]["ratio_per_rep"] = [round(x, 3) for x in paired]
            s[step]["target_met"] = s[step]["ratio"] >= 0.80
    return s


def markdown(res: dict) -> str:
    s, m = res["summary"], res["machine"]
    L = [f"# S3: lifeboat vs AWS CLI ({res['date']})", "",
         f"Data set: {res['dataset']['files']} incompressible files, {res['dataset']['mib']} MiB (seed {res['dataset']['seed']}, "
         f"digest {res['dataset']['digest'][:16]}). {res['reps']} repetitions, tool order alternating, medians. "
         f"Concurrency {res['concurrency']} (lifeboat default; CLI max_concurrent_requests={res['concurrency']}, "
         f"multipart_chunksize {PART_MIB}MB, multipart_threshold {THRESHOLD_MIB}MB).", "",
         "| step | tool | wall s | MiB/s | CPU s | peak RSS MiB | radosgw CPU s | ceph-osd CPU s | machine busy (of 2 cores) | stored MiB | verify |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for step, label in (("upload", "backup / upload"), ("download", "restore / download")):
        for tool in ("cli", "lifeboat"):
            t = s[step].get(tool)
            if not t:
                continue
            stored = f"{t['stored_bytes'] / MIB:.1f}" if t.get("stored_bytes") else ""
            ok = sum(1 for v in t["verify"] if v == "ok")
            ver = f"{ok}/{len(t['verify'])} ok" if step == "download" else ""
            L.append(f"| {label} | {'AWS CLI' if tool == 'cli' else 'lifeboat'} | {t['wall']:.2f} ({t['wall_min']:.2f}–{t['wall_max']:.2f}) | "
                     f"{t['mib_s']} | {t['cpu']} | {t['rss_mib']} | {t['radosgw_cpu']} | {t['osd_cpu']} | {t['machine_busy_cores']} | {stored} | {ver} |")
    L.append("")
    for step in ("upload", "download"):
        if "ratio" in s[step]:
            L.append(f"* {step}: lifeboat/CLI throughput = **{s[step]['ratio']:.2f}** (per repetition "
                     f"{', '.join(f'{x:.2f}' for x in s[step]['ratio_per_rep'])}); target 0.80 "
                     f"**{'met' if s[step]['target_met'] else 'NOT met'}**")
    if res.get("diag"):
        d = res["diag"]
        L += ["", "## Diagnostics (one run each)", ""]
        for k, v in d.items():
            if isinstance(v, dict) and "wall" in v:
                L.append(f"* {k}: {v['wall']:.2f} s wall, {res['dataset']['mib'] / v['wall']:.1f} MiB/s, CPU {v.get('cpu')} s, "
                         f"server CPU {v.get('server_cpu')}, machine busy {v.get('machine_busy_cores')} cores")
        for k, v in d.items():
            if isinstance(v, dict) and "by_comm" in v:
                L += ["", f"### perf, {k}: share of all samples by process (system-wide, {v['samples']} samples)", "", "```"] + v["by_process"] + ["```"]
                L += ["", f"### perf, {k}: lifeboat's hottest symbols (% of lifeboat's samples)", "", "```"] + v["lifeboat_sym"][:20] + ["```"]
                L += ["", f"### perf, {k}: lifeboat's threads (% of lifeboat's samples)", "", "```"] + v.get("lifeboat_thread", [])[:8] + ["```"]
    L += ["", "## Machine", "", "```", json.dumps(m, indent=1), "```", ""]
    return "\n".join(L)


# ------------------------------------------------------------------ main ---------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", default="1")
    ap.add_argument("--workdir", default="/var/tmp/lifeboat-s3bench")
    ap.add_argument("--lifeboat", default=str(REPO_ROOT / "target/release/lifeboat"))
    ap.add_argument("--aws", help="aws executable (default: install awscli into --venv)")
    ap.add_argument("--venv", default="/var/tmp/s3bench-venv")
    ap.add_argument("--concurrency", type=int, default=LIFEBOAT_CONCURRENCY,
                    help="CLI max_concurrent_requests; also exported as LIFEBOAT_S3_CONCURRENCY if not the default")
    ap.add_argument("--no-diag", action="store_true", help="skip the concurrency-1 runs and the perf profiles")
    ap.add_argument("--no-perf", action="store_true", help="skip the perf profiles only")
    ap.add_argument("--timeout", type=int, default=1800, help="per step, seconds")
    ap.add_argument("--shared-server", action="store_true",
                    help="use the server of AWS_ENDPOINT_URL / the default s3-up.sh one instead of a private one")
    ap.add_argument("--server-dir", default="/tmp/lb-s3bench-srv", help="state directory of the private server")
    ap.add_argument("--server-port", type=int, default=7490)
    ap.add_argument("--server-mon-port", type=int, default=6799)
    ap.add_argument("--keep-server", action="store_true", help="leave the private server running afterwards")
    ap.add_argument("--out-prefix", default=str(REPO_ROOT / "benches/out/s3-compare"))
    a = ap.parse_args()

    lb = Path(a.lifeboat).resolve()
    if not lb.exists():
        sys.exit(f"no lifeboat binary at {lb} (cargo build --release, or --lifeboat PATH)")
    env = s3_env(a)
    env["LIFEBOAT_PASSWORD"] = "s3bench"
    env["LIFEBOAT_S3_PATH_STYLE"] = "true"
    env.pop("LIFEBOAT_REPOSITORY", None)
    if a.concurrency != LIFEBOAT_CONCURRENCY:
        env["LIFEBOAT_S3_CONCURRENCY"] = str(a.concurrency)
    endpoint = env["AWS_ENDPOINT_URL"]
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    aws = ensure_aws(a)
    cfg = work / "aws-config"
    aws_config(aws, env, cfg, a.concurrency)
    cfg1 = work / "aws-config-c1"
    aws_config(aws, env, cfg1, 1)
    manifest = gen_dataset(work / f"ds-{a.size_mib}m-s{a.seed}", a.size_mib, a.seed)
    data = work / f"ds-{a.size_mib}m-s{a.seed}" / "data"
    run_id = f"{os.getpid():x}{int(time.time()) % 100000:x}"
    logdir = work / "logs" / run_id
    logdir.mkdir(parents=True)
    state_dir = Path(os.environ.get("LIFEBOAT_S3_DIR", os.environ.get("TMPDIR", "/tmp") + "/lifeboat-s3")) \
        if a.shared_server else Path(a.server_dir)
    pids = server_pids(state_dir)
    R = Runner(a, env, logdir, pids)
    ctx = {"aws": aws, "env": env, "endpoint": endpoint, "lifeboat": lb, "data": data, "work": work,
           "restore_dir": work / "restore", "manifest": manifest, "aws_cfg": cfg}

    def version(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60).stdout.strip() or \
                   subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60).stderr.strip()
        except Exception as e:  # noqa: BLE001
            return f"n/a ({e})"

    machine = {
        "cpus": os.cpu_count(), "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30), 1),
        "kernel": platform.release(), "loadavg_start": open("/proc/loadavg").read().split()[:3],
        "lifeboat": version([str(lb), "--version"]),
        "lifeboat_sha256": hashlib.sha256(lb.read_bytes()).hexdigest()[:12],
        "aws": version([str(aws), "--version"]),
        "radosgw": radosgw_version(),
        "endpoint": endpoint, "server_pids": pids,
    }
    log(f"machine: {machine}")

    reps = []
    for rep in range(a.reps):
        warm(data)
        order = ["cli", "lifeboat"] if rep % 2 == 0 else ["lifeboat", "cli"]
        r = {"rep": rep, "order": order}
        for tool in order:
            bucket = f"lbs3b-{run_id}-r{rep}-{tool}"
            if not a.shared_server:
                fresh_private_server(a, R)
            if tool == "cli":
                r["cli"] = cli_pair(R, a, ctx, bucket, f"r{rep}")
            else:
                r["lifeboat"] = lifeboat_pair(R, a, ctx, bucket, f"r{rep}")
        reps.append(r)

    diag = {}
    if not a.no_diag:
        warm(data)
        if not a.shared_server:
            fresh_private_server(a, R)
        d = lifeboat_pair(R, a, ctx, f"lbs3b-{run_id}-dlbc1", "diag-c1", {"LIFEBOAT_S3_CONCURRENCY": "1"}, download=True)
        if not a.shared_server:
            fresh_private_server(a, R)
        diag["lifeboat backup, LIFEBOAT_S3_CONCURRENCY=32"] = lifeboat_pair(
            R, a, ctx, f"lbs3b-{run_id}-dlbc32", "diag-c32", {"LIFEBOAT_S3_CONCURRENCY": "32"}, download=False)["upload"]
        if not a.shared_server:
            fresh_private_server(a, R)
        diag["lifeboat backup, LIFEBOAT_S3_CHECKSUM=crc32c (no MD5)"] = lifeboat_pair(
            R, a, ctx, f"lbs3b-{run_id}-dlbcrc", "diag-crc32c", {"LIFEBOAT_S3_CHECKSUM": "crc32c"}, download=False)["upload"]
        diag["lifeboat backup, LIFEBOAT_S3_CONCURRENCY=1"] = d["upload"]
        diag["lifeboat restore, LIFEBOAT_S3_CONCURRENCY=1"] = d["download"]
        local = work / "local-repo"
        shutil.rmtree(local, ignore_errors=True)
        e = {"XDG_CACHE_HOME": str(work / "xdg" / "diag-local")}
        R.run("diag-local-init", [lb, "-r", local, "init"], e, timed=False)
        diag["lifeboat backup into a local repository (no S3; same disk)"] = R.run(
            "diag-local-backup", [lb, "-r", local, "backup", data, "--host", HOST], e)
        shutil.rmtree(local, ignore_errors=True)
        if not a.shared_server:
            fresh_private_server(a, R)
        d = cli_pair(R, a, ctx, f"lbs3b-{run_id}-dclic1", "diag-c1", conc_cfg=cfg1, download=True)
        diag["CLI upload, max_concurrent_requests=1"] = d["upload"]
        diag["CLI download, max_concurrent_requests=1"] = d["download"]
        if not a.no_perf and shutil.which("perf"):
            pb, pr = logdir / "perf-backup.data", logdir / "perf-restore.data"
            if not a.shared_server:
                fresh_private_server(a, R)
            d = lifeboat_pair(R, a, ctx, f"lbs3b-{run_id}-dperf", "diag-perf", wrap_backup=perf_wrap(pb), wrap_restore=perf_wrap(pr))
            diag["lifeboat backup under perf record -a"] = d["upload"]
            diag["lifeboat restore under perf record -a"] = d["download"]
            outdir = Path(a.out_prefix).parent
            outdir.mkdir(parents=True, exist_ok=True)
            diag["perf backup"] = perf_summary(pb, outdir, Path(a.out_prefix).name + "-perf-backup", R.pids)
            diag["perf restore"] = perf_summary(pr, outdir, Path(a.out_prefix).name + "-perf-restore", R.pids)
    machine["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    machine["server"] = "shared" if a.shared_server else f"private ({a.server_dir}, port {a.server_port})"
    if not a.shared_server and not a.keep_server:
        stop_private_server(Path(a.server_dir))

    res = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "reps": a.reps, "concurrency": a.concurrency,
        "dataset": {"mib": a.size_mib, "files": len(manifest["files"]), "seed": a.seed, "digest": manifest["digest"],
                    "bytes": manifest["total_bytes"]},
        "machine": machine, "summary": summarize(reps, manifest["total_bytes"]), "raw": reps, "diag": diag,
        "logs": str(logdir),
    }
    out = Path(a.out_prefix)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(str(out) + ".json").write_text(json.dumps(res, indent=1, default=str))
    md = markdown(res)
    Path(str(out) + ".md").write_text(md)
    print(md)
    bad = [v for st in res["summary"].values() for t in ("cli", "lifeboat") if t in st for v in st[t]["verify"] if v not in (None, "ok")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
