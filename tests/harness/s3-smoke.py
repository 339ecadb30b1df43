#!/usr/bin/env python3
"""s3-smoke.py - prove that the S3 server from s3-up.sh is what lifeboat's S3 tests need.

Usage:  eval "$(tests/harness/s3-up.sh)" && tests/harness/s3-smoke.py [--keep] [--system-boto3]

Reads AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION (the exports of
s3-up.sh). Prints one PASS/FAIL line per check and exits non-zero if any check failed.

Two kinds of checks:
  * requirements (object lock really enforced, versioning, pagination, ranges, ...): must hold;
  * probes of behaviour that differs between S3 implementations (checksum headers, conditional
    PUT, aws-chunked uploads, clock skew, ...): they PASS when radosgw behaves as documented in
    tests/harness/README.md (the EXPECTED table below) and FAIL when it does not, so a change of
    server version cannot slip by unnoticed.

boto3 (pinned, BOTO3_VERSION) is installed on first use with pip into
$LIFEBOAT_CACHE/py<ver>-boto3-<version> (default cache /var/cache/lifeboat-test); --system-boto3
uses whatever boto3 the interpreter already has instead. Some probes send hand-signed requests
(SigV4 implemented below with the standard library) because boto3 cannot produce them.

Buckets with locked objects cannot be deleted before their retention ends; they are left behind
(their names are printed). Retention periods are short (minutes) except where noted. With the
default memstore OSD everything is gone after s3-down.sh anyway.
"""

import base64
import concurrent.futures
import datetime as dt
import email.utils
import hashlib
import hmac
import http.client
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.parse
import zlib
from pathlib import Path

BOTO3_VERSION = "1.44.5"

# What radosgw 16.2.15 (Debian 12) was seen to do; see README.md. Probes compare against this.
EXPECTED = {
    "put_lock_without_checksum": "accepted",  # AWS: 400 InvalidRequest (Content-MD5 or x-amz-checksum-* required)
    "content_md5_wrong": "rejected",  # BadDigest
    "checksum_sha256_right": "accepted",
    "checksum_sha256_wrong": "accepted",  # header ignored: not verified, not stored
    "checksum_crc32_right": "accepted",
    "checksum_crc32_wrong": "accepted",
    "checksum_stored": "no",  # GetObject/HeadObject with ChecksumMode=ENABLED returns no checksum
    "aws_chunked_trailer": "rejected",  # STREAMING-UNSIGNED-PAYLOAD-TRAILER (newer SDK default) unsupported
    "aws_chunked_signed": "accepted",  # STREAMING-AWS4-HMAC-SHA256-PAYLOAD without trailer
    "if_none_match_star": "enforced",
    "if_none_match_star_versioned": "ignored",  # on a versioned (object lock) bucket it just adds a version
    # If-Match: only the unquoted ETag matches (the standard quoted form never does), and on a
    # versioned bucket nothing matches at all
    "if_match": "wrong:412 quoted:412 unquoted:200 star:200",
    "if_match_versioned": "wrong:412 quoted:412 unquoted:412 star:412",
    "copy_version_id": "missing",  # CopyObject response has no x-amz-version-id
    "unsigned_payload": "accepted",
    "multipart_lock_headers": "ignored",  # retention/legal hold on CreateMultipartUpload silently dropped
    "multipart_default_retention": "applied",
    "copy_lock_headers": "ignored",  # lock headers on CopyObject silently dropped
    "skew_14min": "accepted",
    "skew_16min": "rejected",  # RequestTimeTooSkewed: the usual 15 minutes
    "skew_future_14min": "accepted",
    "skew_future_16min": "rejected",
}

RESULTS = []  # (ok, name, detail)
FINDINGS = {}


def report(ok, name, detail=""):
    RESULTS.append((ok, name, detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}{': ' + detail if detail else ''}", flush=True)


def probe(key, observed, detail=""):
    """A behaviour probe: record what we saw, PASS if it matches EXPECTED."""
    FINDINGS[key] = observed
    want = EXPECTED.get(key)
    text = f"{observed}" + (f" ({detail})" if detail else "")
    if want is None or want == observed:
        report(True, f"probe {key}", text)
    else:
        report(False, f"probe {key}", f"{text}; README/EXPECTED says '{want}'")


def check(name):
    """Decorator: run a check function, turning unexpected exceptions into FAIL lines."""

    def wrap(fn):
        def run(*a, **kw):
            try:
                return fn(*a, **kw)
            except Exception as e:  # noqa: BLE001 - every surprise is a failed check
                report(False, name, f"unexpected {type(e).__name__}: {e}")
                return None

        run.__name__ = fn.__name__
        return run

    return wrap


# ----------------------------------------------------------------------------- boto3 ---------
def import_boto3(use_system):
    if not use_system:
        cache = Path(os.environ.get("LIFEBOAT_CACHE", "/var/cache/lifeboat-test"))
        target = cache / f"py{sys.version_info[0]}{sys.version_info[1]}-boto3-{BOTO3_VERSION}"
        if not (target / ".complete").exists():
            tmp = target.with_name(target.name + f".tmp{os.getpid()}")
            print(f"s3-smoke: installing boto3=={BOTO3_VERSION} into {target}", file=sys.stderr)
            cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   "--no-warn-conflicts", "--root-user-action=ignore", "--target", str(tmp),
                   f"boto3=={BOTO3_VERSION}"]
            try:
                cache.mkdir(parents=True, exist_ok=True)
                subprocess.run(cmd, check=True, stdout=sys.stderr)
            except (OSError, subprocess.CalledProcessError) as e:
                sys.exit(f"s3-smoke: could not install boto3 with pip ({e}); install pip for "
                         f"{sys.executable} or run with --system-boto3")
            (tmp / ".complete").write_text(BOTO3_VERSION + "\n")
            if target.exists() and not (target / ".complete").exists():
                subprocess.run(["rm", "-rf", str(target)], check=False)  # an interrupted install
            try:
                tmp.rename(target)
            except OSError:  # another run installed it meanwhile
                subprocess.run(["rm", "-rf", str(tmp)], check=False)
        sys.path.insert(0, str(target))
    global boto3, botocore, Config, ClientError
    import boto3
    import botocore
    from botocore.config import Config
    from botocore.exceptions import ClientError


def err_code(e):
    return e.response.get("Error", {}).get("Code", "?"), e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


# ----------------------------------------------------------------------------- raw SigV4 -----
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:7480").rstrip("/")
AK = os.environ.get("AWS_ACCESS_KEY_ID", "testkey")
SK = os.environ.get("AWS_SECRET_ACCESS_KEY", "testsecret")
REGION = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
EP = urllib.parse.urlsplit(ENDPOINT)
if EP.scheme != "http":
    sys.exit("s3-smoke: only http:// endpoints are supported (the harness serves plain HTTP)")


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(date):
    k = _hmac(("AWS4" + SK).encode(), date)
    for part in (REGION, "s3", "aws4_request"):
        k = _hmac(k, part)
    return k


def raw(method, path, query=None, headers=None, body=b"", payload_hash=None, when=None):
    """Send one SigV4 (header) signed request; return (status, headers dict, body bytes).

    path is the unencoded path ("/bucket/key"); payload_hash overrides the body hash (e.g. the
    STREAMING-* values); when overrides the signing time (clock skew probes)."""
    when = when or dt.datetime.now(dt.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    headers = {k.lower(): str(v) for k, v in (headers or {}).items()}
    headers["host"] = EP.netloc
    headers["x-amz-date"] = amz_date
    headers["x-amz-content-sha256"] = payload_hash or hashlib.sha256(body).hexdigest()
    if "content-length" not in headers and (body or method in ("PUT", "POST")):
        headers["content-length"] = str(len(body))
    q = query or {}
    cq = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(str(v), safe='-_.~')}"
                  for k, v in sorted(q.items()))
    cpath = urllib.parse.quote(path, safe="/-_.~")
    signed = sorted(headers)
    creq = "\n".join([method, cpath, cq, "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in signed),
                      ";".join(signed), headers["x-amz-content-sha256"]])
    scope = f"{date}/{REGION}/s3/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    sig = hmac.new(signing_key(date), sts.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={AK}/{scope}, "
                                f"SignedHeaders={';'.join(signed)}, Signature={sig}")
    conn = http.client.HTTPConnection(EP.hostname, EP.port or 80, timeout=60)
    try:
        conn.request(method, cpath + ("?" + cq if cq else ""), body=body or None, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def b64(data):
    return base64.b64encode(data).decode()


def crc32_b64(data):
    return b64(zlib.crc32(data).to_bytes(4, "big"))


def server_now(client):
    """The server's clock (from a Date header), so retain-until dates do not depend on ours."""
    r = client.list_buckets()
    d = r["ResponseMetadata"]["HTTPHeaders"].get("date")
    return email.utils.parsedate_to_datetime(d) if d else dt.datetime.now(dt.timezone.utc)


# ----------------------------------------------------------------------------- checks --------
def main():
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", action="store_true", help="do not delete the unlocked test bucket")
    ap.add_argument("--system-boto3", action="store_true", help="use the interpreter's boto3")
    args = ap.parse_args()
    import_boto3(args.system_boto3)
    print(f"s3-smoke: {ENDPOINT} region={REGION} boto3={boto3.__version__} "
          f"python={sys.version.split()[0]}", flush=True)

    def make_client(checksums="when_required"):
        return boto3.client(
            "s3", endpoint_url=ENDPOINT, aws_access_key_id=AK, aws_secret_access_key=SK,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                          request_checksum_calculation=checksums, response_checksum_validation=checksums,
                          retries={"max_attempts": 1}, max_pool_connections=16))

    s3 = make_client()
    t_start = time.time()
    run_id = f"{int(time.time())}-{secrets.token_hex(3)}"
    lock_bucket = f"lifeboat-smoke-lock-{run_id}"
    plain_bucket = f"lifeboat-smoke-plain-{run_id}"

    # --- connectivity / clock
    try:
        now = server_now(s3)
    except Exception as e:  # noqa: BLE001
        report(False, "connect", f"{type(e).__name__}: {e}")
        return finish(t_start)
    skew = (now - dt.datetime.now(dt.timezone.utc)).total_seconds()
    report(abs(skew) < 60, "connect", f"ListBuckets ok, server clock {skew:+.1f} s from ours")

    # --- bucket with object lock, path-style
    @check("create-bucket-object-lock")
    def create_lock_bucket():
        r = s3.create_bucket(Bucket=lock_bucket, ObjectLockEnabledForBucket=True)
        loc = r.get("Location", "")
        cfg = s3.get_object_lock_configuration(Bucket=lock_bucket)["ObjectLockConfiguration"]
        ok = cfg.get("ObjectLockEnabled") == "Enabled"
        report(ok, "create-bucket-object-lock", f"{lock_bucket} (Location {loc!r}), lock config {cfg}")
        return ok

    if not create_lock_bucket():
        return finish(t_start)
    s3.create_bucket(Bucket=plain_bucket)

    @check("path-style-only")
    def path_style():
        # A virtual-hosted request (bucket in Host) is not routed to the bucket without rgw_dns_name.
        st, _, body = raw("GET", "/", headers={"host": f"{lock_bucket}.{EP.netloc}"})
        report(True, "path-style-only", f"virtual-hosted style GET gives {st} "
               f"({'ListBuckets, bucket ignored' if b'ListAllMyBucketsResult' in body else body[:80]!r}); "
               "clients must force path-style")

    @check("versioning-enabled")
    def versioning():
        st = s3.get_bucket_versioning(Bucket=lock_bucket).get("Status")
        report(st == "Enabled", "versioning-enabled", f"Status={st}")
        try:
            s3.put_bucket_versioning(Bucket=lock_bucket, VersioningConfiguration={"Status": "Suspended"})
            report(False, "versioning-cannot-be-suspended", "Suspended was accepted")
        except ClientError as e:
            report(True, "versioning-cannot-be-suspended", "refused: %s %s" % err_code(e))

    path_style()
    versioning()

    now = server_now(s3)
    compliance_until = (now + dt.timedelta(minutes=30)).replace(microsecond=0)
    governance_until = (now + dt.timedelta(minutes=30)).replace(microsecond=0)
    data_c = b"compliance object " + secrets.token_bytes(64)
    data_g = b"governance object " + secrets.token_bytes(64)
    state = {}

    @check("put-compliance-content-md5")
    def put_compliance():
        r = s3.put_object(Bucket=lock_bucket, Key="locked/compliance", Body=data_c,
                          ContentMD5=b64(hashlib.md5(data_c).digest()),
                          ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=compliance_until)
        state["c_v1"] = r["VersionId"]
        ret = s3.get_object_retention(Bucket=lock_bucket, Key="locked/compliance", VersionId=r["VersionId"])["Retention"]
        h = s3.head_object(Bucket=lock_bucket, Key="locked/compliance", VersionId=r["VersionId"])
        ok = (ret["Mode"] == "COMPLIANCE" and ret["RetainUntilDate"] == compliance_until
              and h.get("ObjectLockMode") == "COMPLIANCE")
        report(ok, "put-compliance-content-md5",
               f"version {r['VersionId']}, retention {ret['Mode']} until {ret['RetainUntilDate'].isoformat()}")

    @check("put-governance-checksum-sha256")
    def put_governance():
        r = s3.put_object(Bucket=lock_bucket, Key="locked/governance", Body=data_g,
                          ChecksumSHA256=b64(hashlib.sha256(data_g).digest()),
                          ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=governance_until)
        state["g_v1"] = r["VersionId"]
        ret = s3.get_object_retention(Bucket=lock_bucket, Key="locked/governance", VersionId=r["VersionId"])["Retention"]
        ok = ret["Mode"] == "GOVERNANCE" and ret["RetainUntilDate"] == governance_until
        report(ok, "put-governance-checksum-sha256",
               f"version {r['VersionId']}, retention {ret['Mode']} until {ret['RetainUntilDate'].isoformat()}")

    put_compliance()
    put_governance()

    # --- checksum headers (hand-made requests so that wrong values can be sent)
    @check("checksum headers")
    def checksum_probes():
        body = b"checksum probe " + secrets.token_bytes(32)
        until = (server_now(s3) + dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lock = {"x-amz-object-lock-mode": "GOVERNANCE", "x-amz-object-lock-retain-until-date": until}

        def put(name, extra):
            st, _, rb = raw("PUT", f"/{lock_bucket}/checksum/{name}", headers={**lock, **extra}, body=body)
            code = rb.split(b"<Code>")[1].split(b"</Code>")[0].decode() if b"<Code>" in rb else ""
            return ("accepted" if st == 200 else "rejected"), f"HTTP {st}{' ' + code if code else ''}"

        probe("put_lock_without_checksum", *put("none", {}))
        probe("content_md5_wrong", *put("md5-wrong", {"content-md5": b64(hashlib.md5(b"x").digest())}))
        good_sha = b64(hashlib.sha256(body).digest())
        probe("checksum_sha256_right", *put("sha-right", {"x-amz-checksum-sha256": good_sha}))
        probe("checksum_sha256_wrong", *put("sha-wrong", {"x-amz-checksum-sha256": b64(hashlib.sha256(b"x").digest())}))
        probe("checksum_crc32_right", *put("crc-right", {"x-amz-checksum-crc32": crc32_b64(body)}))
        probe("checksum_crc32_wrong", *put("crc-wrong", {"x-amz-checksum-crc32": crc32_b64(b"x")}))
        h = s3.head_object(Bucket=lock_bucket, Key="checksum/sha-right", ChecksumMode="ENABLED")
        stored = "yes" if any(k.startswith("Checksum") for k in h) else "no"
        probe("checksum_stored", stored, "HeadObject ChecksumMode=ENABLED after a PUT with x-amz-checksum-sha256")

    checksum_probes()

    # --- aws-chunked uploads, as newer AWS SDKs (e.g. Rust aws-sdk-s3 with the default
    #     request_checksum_calculation=WhenSupported) send streaming bodies
    @check("aws-chunked")
    def aws_chunked():
        data = b"aws-chunked body " + secrets.token_bytes(100)
        crc = crc32_b64(data)
        enc = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n" + f"x-amz-checksum-crc32:{crc}\r\n\r\n".encode()
        st, _, rb = raw("PUT", f"/{plain_bucket}/chunked/trailer", body=enc,
                        payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                        headers={"content-encoding": "aws-chunked", "x-amz-decoded-content-length": len(data),
                                 "x-amz-trailer": "x-amz-checksum-crc32", "x-amz-sdk-checksum-algorithm": "CRC32"})
        if st == 200:
            got = s3.get_object(Bucket=plain_bucket, Key="chunked/trailer")["Body"].read()
            probe("aws_chunked_trailer", "accepted" if got == data else "corrupted",
                  f"HTTP 200, stored object {'matches' if got == data else 'differs: %r' % got[:40]}")
        else:
            code = rb.split(b"<Code>")[1].split(b"</Code>")[0].decode() if b"<Code>" in rb else rb[:60]
            probe("aws_chunked_trailer", "rejected", f"HTTP {st} {code}")
        # UNSIGNED-PAYLOAD (what SDKs may send for streaming bodies when they do not use aws-chunked)
        st, _, rb = raw("PUT", f"/{plain_bucket}/chunked/unsigned", body=data, payload_hash="UNSIGNED-PAYLOAD")
        got = s3.get_object(Bucket=plain_bucket, Key="chunked/unsigned")["Body"].read() if st == 200 else None
        probe("unsigned_payload", "accepted" if got == data else "rejected", f"HTTP {st}")
        # The older signed-chunk streaming format (no trailer).
        st, got = signed_chunked_put(plain_bucket, "chunked/signed", data)
        probe("aws_chunked_signed", "accepted" if st == 200 and got == data else "rejected",
              f"HTTP {st}, stored object {'matches' if got == data else 'differs'}")

    def signed_chunked_put(bucket, key, data):
        when = dt.datetime.now(dt.timezone.utc)
        amz_date = when.strftime("%Y%m%dT%H%M%SZ")
        scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
        chunks = [data, b""]

        def chunk_len(n):
            return len(f"{n:x};chunk-signature={'0' * 64}\r\n") + n + 2

        total = sum(chunk_len(len(c)) for c in chunks)
        headers = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
                   "content-length": str(total)}
        # The seed signature signs the headers; each chunk's signature chains on the previous one.
        hdrs = {**headers, "host": EP.netloc, "x-amz-date": amz_date,
                "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"}
        signed = sorted(hdrs)
        cpath = urllib.parse.quote(f"/{bucket}/{key}", safe="/-_.~")
        creq = "\n".join(["PUT", cpath, "", "".join(f"{h}:{hdrs[h]}\n" for h in signed), ";".join(signed),
                          "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"])
        sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
        key_ = signing_key(amz_date[:8])
        seed = prev = hmac.new(key_, sts.encode(), hashlib.sha256).hexdigest()
        body = b""
        empty = hashlib.sha256(b"").hexdigest()
        for c in chunks:
            csts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, empty, hashlib.sha256(c).hexdigest()])
            prev = hmac.new(key_, csts.encode(), hashlib.sha256).hexdigest()
            body += f"{len(c):x};chunk-signature={prev}\r\n".encode() + c + b"\r\n"
        hdrs["authorization"] = (f"AWS4-HMAC-SHA256 Credential={AK}/{scope}, SignedHeaders={';'.join(signed)}, "
                                 f"Signature={seed}")
        conn = http.client.HTTPConnection(EP.hostname, EP.port or 80, timeout=60)
        try:
            conn.request("PUT", cpath, body=body, headers=hdrs)
            r = conn.getresponse()
            r.read()
            st = r.status
        finally:
            conn.close()
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read() if st == 200 else None
        return st, got

    aws_chunked()

    # --- default boto3 checksum behaviour (CRC32 header on every PUT) works too?
    @check("boto3-default-checksums")
    def default_checksums():
        c = make_client("when_supported")
        body = secrets.token_bytes(1000)
        c.put_object(Bucket=plain_bucket, Key="default-checksums", Body=body)
        got = c.get_object(Bucket=plain_bucket, Key="default-checksums")["Body"].read()
        report(got == body, "boto3-default-checksums",
               "PutObject/GetObject with request/response_checksum_calculation=when_supported work")

    default_checksums()

    # --- many objects, pagination
    @check("list-pagination")
    def pagination():
        n = 1100
        keys = [f"many/{i:05d}" for i in range(n)]
        t = time.time()
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda k: s3.put_object(Bucket=plain_bucket, Key=k, Body=k.encode()), keys))
        put_s = time.time() - t
        p1 = s3.list_objects_v2(Bucket=plain_bucket, Prefix="many/")
        ok1 = p1["KeyCount"] == 1000 and p1["IsTruncated"] and "NextContinuationToken" in p1
        p2 = s3.list_objects_v2(Bucket=plain_bucket, Prefix="many/", ContinuationToken=p1["NextContinuationToken"])
        got = [o["Key"] for o in p1["Contents"] + p2.get("Contents", [])]
        ok2 = got == keys and not p2["IsTruncated"]
        report(ok1 and ok2, "list-objects-v2-pagination",
               f"{n} objects put in {put_s:.1f} s (8 threads); pages {p1['KeyCount']} + {p2['KeyCount']}, "
               f"truncated flags {p1['IsTruncated']}/{p2['IsTruncated']}, order {'ok' if got == keys else 'WRONG'}")
        # small pages with StartAfter (how a resumable lister walks) and the v1 Marker API
        seen, after = [], ""
        while True:
            r = s3.list_objects_v2(Bucket=plain_bucket, Prefix="many/", MaxKeys=333, StartAfter=after)
            seen += [o["Key"] for o in r.get("Contents", [])]
            if not r["IsTruncated"]:
                break
            after = seen[-1]
        v1 = [o["Key"] for page in s3.get_paginator("list_objects").paginate(Bucket=plain_bucket, Prefix="many/")
              for o in page.get("Contents", [])]
        report(seen == keys and v1 == keys, "list-pagination-startafter-and-v1",
               f"MaxKeys=333+StartAfter: {len(seen)} keys; ListObjects v1 marker paging: {len(v1)} keys")
        # version listing pagination on the versioned bucket
        vkeys = [f"vers/{i:05d}" for i in range(1050)]
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda k: s3.put_object(Bucket=lock_bucket, Key=k, Body=b"v"), vkeys))
        pages = list(s3.get_paginator("list_object_versions").paginate(Bucket=lock_bucket, Prefix="vers/"))
        vs = [v["Key"] for p in pages for v in p.get("Versions", [])]
        report(vs == vkeys and len(pages) >= 2, "list-object-versions-pagination",
               f"{len(vs)} versions in {len(pages)} pages (KeyMarker/VersionIdMarker)")
        # delimiter listing
        r = s3.list_objects_v2(Bucket=plain_bucket, Delimiter="/")
        prefixes = sorted(p["Prefix"] for p in r.get("CommonPrefixes", []))
        report("many/" in prefixes, "list-delimiter", f"CommonPrefixes {prefixes}")
        # multi-object delete (a plain bucket) in batches of 1000
        t = time.time()
        for i in range(0, n, 1000):
            r = s3.delete_objects(Bucket=plain_bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]],
                                                                "Quiet": True})
            if r.get("Errors"):
                raise RuntimeError(f"DeleteObjects errors: {r['Errors'][:3]}")
        left = s3.list_objects_v2(Bucket=plain_bucket, Prefix="many/")["KeyCount"]
        report(left == 0, "delete-objects-batch", f"{n} keys deleted with DeleteObjects in {time.time() - t:.1f} s "
               f"(no Content-MD5, CRC32 header from boto3)")

    pagination()

    # --- range reads
    @check("range-reads")
    def ranges():
        blob = secrets.token_bytes(1 << 20)
        s3.put_object(Bucket=plain_bucket, Key="range/blob", Body=blob)
        cases = [("bytes=100-199", blob[100:200]), ("bytes=-10", blob[-10:]),
                 ("bytes=1048000-", blob[1048000:]), ("bytes=0-0", blob[:1]),
                 ("bytes=1048570-2000000", blob[1048570:])]
        bad = []
        for rng, want in cases:
            r = s3.get_object(Bucket=plain_bucket, Key="range/blob", Range=rng)
            got = r["Body"].read()
            st = r["ResponseMetadata"]["HTTPStatusCode"]
            if got != want or st != 206 or "ContentRange" not in r:
                bad.append(f"{rng}: {st} {len(got)} bytes {r.get('ContentRange')}")
        try:
            s3.get_object(Bucket=plain_bucket, Key="range/blob", Range="bytes=2000000-")
            bad.append("bytes=2000000- not refused")
            unsat = "200"
        except ClientError as e:
            unsat = "%s %s" % err_code(e)
            if err_code(e)[1] != 416:
                bad.append(f"unsatisfiable range gave {unsat}")
        # a range read of an old version by id
        vr = s3.get_object(Bucket=lock_bucket, Key="locked/compliance", VersionId=state.get("c_v1", "x"), Range="bytes=0-9")
        if vr["Body"].read() != data_c[:10]:
            bad.append("versioned range read wrong")
        report(not bad, "range-reads", "; ".join(bad) if bad else
               f"{len(cases)} ranges ok (206 + Content-Range), unsatisfiable -> {unsat}, versioned range ok")

    ranges()

    # --- object lock enforcement
    @check("lock-enforcement")
    def enforcement():
        for key, vid, mode in (("locked/compliance", state["c_v1"], "COMPLIANCE"),
                               ("locked/governance", state["g_v1"], "GOVERNANCE")):
            try:
                s3.delete_object(Bucket=lock_bucket, Key=key, VersionId=vid)
                report(False, f"delete-locked-version-refused ({mode})", "the locked version was DELETED")
            except ClientError as e:
                code, st = err_code(e)
                report(st == 403 and code == "AccessDenied", f"delete-locked-version-refused ({mode})",
                       f"{st} {code}")
        # DeleteObjects with a version id of a locked object
        r = s3.delete_objects(Bucket=lock_bucket, Delete={"Objects": [{"Key": "locked/compliance", "VersionId": state["c_v1"]}]})
        errs = r.get("Errors", [])
        report(bool(errs) and not r.get("Deleted"), "delete-objects-locked-version-refused",
               f"per-key error {errs[0].get('Code') if errs else None}" if errs else f"Deleted={r.get('Deleted')}")
        # shortening compliance retention
        try:
            s3.put_object_retention(Bucket=lock_bucket, Key="locked/compliance", VersionId=state["c_v1"],
                                    Retention={"Mode": "COMPLIANCE",
                                               "RetainUntilDate": compliance_until - dt.timedelta(minutes=20)})
            report(False, "shorten-compliance-refused", "retention was shortened")
        except ClientError as e:
            report(err_code(e)[1] == 403, "shorten-compliance-refused", "%s %s" % err_code(e)[::-1])
        try:
            s3.put_object_retention(Bucket=lock_bucket, Key="locked/compliance", VersionId=state["c_v1"],
                                    Retention={"Mode": "GOVERNANCE", "RetainUntilDate": compliance_until},
                                    BypassGovernanceRetention=True)
            report(False, "compliance-to-governance-refused", "mode was downgraded")
        except ClientError as e:
            report(err_code(e)[1] == 403, "compliance-to-governance-refused", "%s %s" % err_code(e)[::-1])
        longer = compliance_until + dt.timedelta(minutes=5)
        s3.put_object_retention(Bucket=lock_bucket, Key="locked/compliance", VersionId=state["c_v1"],
                                Retention={"Mode": "COMPLIANCE", "RetainUntilDate": longer})
        got = s3.get_object_retention(Bucket=lock_bucket, Key="locked/compliance", VersionId=state["c_v1"])["Retention"]
        report(got["RetainUntilDate"] == longer, "extend-compliance-allowed",
               f"now until {got['RetainUntilDate'].isoformat()}")
        try:
            s3.put_object(Bucket=lock_bucket, Key="locked/past", Body=b"x", ObjectLockMode="COMPLIANCE",
                          ObjectLockRetainUntilDate=server_now(s3) - dt.timedelta(days=1))
            report(False, "retain-until-in-past-refused", "accepted")
        except ClientError as e:
            report(True, "retain-until-in-past-refused", "%s %s" % err_code(e)[::-1])

    enforcement()

    # --- plain DELETE adds a delete marker; the locked version survives
    @check("delete-marker")
    def delete_marker():
        r = s3.delete_object(Bucket=lock_bucket, Key="locked/compliance")
        marker = r.get("VersionId")
        ok = r.get("DeleteMarker") is True and marker and marker != state["c_v1"]
        try:
            s3.get_object(Bucket=lock_bucket, Key="locked/compliance")
            hidden = "still visible"
        except ClientError as e:
            hidden = "%s %s" % err_code(e)[::-1]
        old = s3.get_object(Bucket=lock_bucket, Key="locked/compliance", VersionId=state["c_v1"])["Body"].read()
        vers = s3.list_object_versions(Bucket=lock_bucket, Prefix="locked/compliance")
        n_v, n_m = len(vers.get("Versions", [])), len(vers.get("DeleteMarkers", []))
        ok = ok and old == data_c and hidden.startswith("404") and n_v == 1 and n_m == 1
        report(ok, "plain-delete-adds-marker",
               f"DeleteMarker={r.get('DeleteMarker')} marker version {marker}; GET without version -> {hidden}; "
               f"old version by id readable={old == data_c}; versions={n_v} markers={n_m}")
        # The delete marker itself is not locked and can be removed, restoring the object.
        s3.delete_object(Bucket=lock_bucket, Key="locked/compliance", VersionId=marker)
        back = s3.get_object(Bucket=lock_bucket, Key="locked/compliance")["Body"].read() == data_c
        report(back, "remove-delete-marker-restores", "deleting the marker by version id brings the object back")

    delete_marker()

    # --- governance bypass
    @check("governance-bypass")
    def governance():
        key, vid = "locked/governance", state["g_v1"]
        try:
            s3.put_object_retention(Bucket=lock_bucket, Key=key, VersionId=vid,
                                    Retention={"Mode": "GOVERNANCE", "RetainUntilDate": governance_until - dt.timedelta(minutes=10)})
            report(False, "shorten-governance-without-bypass-refused", "accepted")
        except ClientError as e:
            report(err_code(e)[1] == 403, "shorten-governance-without-bypass-refused", "%s %s" % err_code(e)[::-1])
        # Deny the bypass permission by bucket policy: the header must then not help.
        policy = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Deny", "Principal": {"AWS": ["*"]}, "Action": ["s3:BypassGovernanceRetention"],
            "Resource": [f"arn:aws:s3:::{lock_bucket}/*"]}]}
        s3.put_bucket_policy(Bucket=lock_bucket, Policy=json.dumps(policy))
        try:
            s3.delete_object(Bucket=lock_bucket, Key=key, VersionId=vid, BypassGovernanceRetention=True)
            report(False, "bypass-denied-by-policy", "deleted although the policy denies s3:BypassGovernanceRetention")
            return
        except ClientError as e:
            report(err_code(e)[1] == 403, "bypass-denied-by-policy", "%s %s" % err_code(e)[::-1])
        finally:
            s3.delete_bucket_policy(Bucket=lock_bucket)
        # Allowed (bucket owner, no deny): shortening with bypass, then deleting with bypass.
        shorter = governance_until - dt.timedelta(minutes=10)
        s3.put_object_retention(Bucket=lock_bucket, Key=key, VersionId=vid, BypassGovernanceRetention=True,
                                Retention={"Mode": "GOVERNANCE", "RetainUntilDate": shorter})
        got = s3.get_object_retention(Bucket=lock_bucket, Key=key, VersionId=vid)["Retention"]["RetainUntilDate"]
        report(got == shorter, "shorten-governance-with-bypass", f"now until {got.isoformat()}")
        s3.delete_object(Bucket=lock_bucket, Key=key, VersionId=vid, BypassGovernanceRetention=True)
        try:
            s3.head_object(Bucket=lock_bucket, Key=key, VersionId=vid)
            report(False, "delete-governance-with-bypass", "version still there")
        except ClientError as e:
            report(err_code(e)[1] in (404, 400), "delete-governance-with-bypass",
                   f"deleted by owner with x-amz-bypass-governance-retention (head now {err_code(e)[1]})")

    governance()

    # --- legal hold, default retention, multipart with lock
    @check("legal-hold")
    def legal_hold():
        r = s3.put_object(Bucket=lock_bucket, Key="locked/hold", Body=b"hold")
        vid = r["VersionId"]
        s3.put_object_legal_hold(Bucket=lock_bucket, Key="locked/hold", VersionId=vid, LegalHold={"Status": "ON"})
        try:
            s3.delete_object(Bucket=lock_bucket, Key="locked/hold", VersionId=vid, BypassGovernanceRetention=True)
            refused = "deleted"
        except ClientError as e:
            refused = "%s %s" % err_code(e)[::-1]
        s3.put_object_legal_hold(Bucket=lock_bucket, Key="locked/hold", VersionId=vid, LegalHold={"Status": "OFF"})
        s3.delete_object(Bucket=lock_bucket, Key="locked/hold", VersionId=vid)
        report(refused.startswith("403"), "legal-hold", f"delete under hold -> {refused}; after OFF deleted")

    @check("default-retention")
    def default_retention():
        s3.put_object_lock_configuration(Bucket=lock_bucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
        r = s3.put_object(Bucket=lock_bucket, Key="locked/default", Body=b"d")
        h = s3.head_object(Bucket=lock_bucket, Key="locked/default", VersionId=r["VersionId"])
        s3.put_object_lock_configuration(Bucket=lock_bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
        ok = h.get("ObjectLockMode") == "GOVERNANCE" and "ObjectLockRetainUntilDate" in h
        report(ok, "default-retention", f"bucket default GOVERNANCE 1 day applied: mode={h.get('ObjectLockMode')} "
               f"until={h.get('ObjectLockRetainUntilDate')}; removed again")
        s3.delete_object(Bucket=lock_bucket, Key="locked/default", VersionId=r["VersionId"], BypassGovernanceRetention=True)

    @check("multipart-with-lock")
    def multipart():
        until = (server_now(s3) + dt.timedelta(minutes=30)).replace(microsecond=0)

        def upload(key, **lock):
            m = s3.create_multipart_upload(Bucket=lock_bucket, Key=key, **lock)
            parts, whole = [], b""
            for i, size in enumerate((5 << 20, 1 << 20), start=1):
                chunk = secrets.token_bytes(size)
                whole += chunk
                p = s3.upload_part(Bucket=lock_bucket, Key=key, UploadId=m["UploadId"], PartNumber=i,
                                   Body=chunk, ContentMD5=b64(hashlib.md5(chunk).digest()))
                parts.append({"PartNumber": i, "ETag": p["ETag"]})
            r = s3.complete_multipart_upload(Bucket=lock_bucket, Key=key, UploadId=m["UploadId"],
                                             MultipartUpload={"Parts": parts})
            got = s3.get_object(Bucket=lock_bucket, Key=key, VersionId=r["VersionId"])["Body"].read()
            if got != whole:
                raise RuntimeError("multipart object content differs")
            return r["VersionId"]

        def retention(key, vid):
            try:
                return s3.get_object_retention(Bucket=lock_bucket, Key=key, VersionId=vid)["Retention"]
            except ClientError as e:
                return err_code(e)[0]

        # 1. lock headers on CreateMultipartUpload
        vid = upload("locked/multipart-headers", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
        ret = retention("locked/multipart-headers", vid)
        probe("multipart_lock_headers", "applied" if isinstance(ret, dict) else "ignored",
              f"CreateMultipartUpload with x-amz-object-lock-mode/retain-until-date -> GetObjectRetention {ret}")
        # 2. the workaround: PutObjectRetention on the completed version
        if not isinstance(ret, dict):
            s3.put_object_retention(Bucket=lock_bucket, Key="locked/multipart-headers", VersionId=vid,
                                    Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until})
        ret = retention("locked/multipart-headers", vid)
        try:
            s3.delete_object(Bucket=lock_bucket, Key="locked/multipart-headers", VersionId=vid)
            refused = "deleted"
        except ClientError as e:
            refused = "%s %s" % err_code(e)[::-1]
        ok = isinstance(ret, dict) and ret["Mode"] == "COMPLIANCE" and ret["RetainUntilDate"] == until
        report(ok and refused.startswith("403"), "multipart-then-put-retention",
               f"6 MiB in 2 parts; after PutObjectRetention: {ret['Mode'] if ok else ret}, "
               f"delete version -> {refused}")
        # 3. bucket default retention and multipart
        s3.put_object_lock_configuration(Bucket=lock_bucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
        try:
            vid = upload("locked/multipart-default")
        finally:
            s3.put_object_lock_configuration(Bucket=lock_bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
        ret = retention("locked/multipart-default", vid)
        probe("multipart_default_retention", "applied" if isinstance(ret, dict) else "ignored",
              f"bucket default GOVERNANCE 1 day -> {ret['Mode'] if isinstance(ret, dict) else ret}")
        if isinstance(ret, dict):
            s3.delete_object(Bucket=lock_bucket, Key="locked/multipart-default", VersionId=vid,
                             BypassGovernanceRetention=True)

    @check("copy-with-lock")
    def copy_with_lock():
        until = (server_now(s3) + dt.timedelta(minutes=30)).replace(microsecond=0)
        s3.put_object(Bucket=lock_bucket, Key="copy/src", Body=b"source")
        r = s3.copy_object(Bucket=lock_bucket, Key="copy/dst", CopySource={"Bucket": lock_bucket, "Key": "copy/src"},
                           ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
        vid = r["ResponseMetadata"]["HTTPHeaders"].get("x-amz-version-id")
        probe("copy_version_id", "present" if vid else "missing", "x-amz-version-id in the CopyObject response")
        h = s3.head_object(Bucket=lock_bucket, Key="copy/dst")
        probe("copy_lock_headers", "applied" if h.get("ObjectLockMode") == "COMPLIANCE" else "ignored",
              f"CopyObject with lock headers -> ObjectLockMode={h.get('ObjectLockMode')}")

    legal_hold()
    default_retention()
    multipart()
    copy_with_lock()

    # --- conditional writes
    @check("conditional-put")
    def conditional():
        for bucket, key in ((plain_bucket, "if_none_match_star"), (lock_bucket, "if_none_match_star_versioned")):
            k = f"cond/{key}"
            s3.put_object(Bucket=bucket, Key=k, Body=b"first", IfNoneMatch="*")
            try:
                s3.put_object(Bucket=bucket, Key=k, Body=b"second", IfNoneMatch="*")
                body = s3.get_object(Bucket=bucket, Key=k)["Body"].read()
                probe(key, "ignored", f"second PUT with If-None-Match: * succeeded, object now {body!r}")
            except ClientError as e:
                code, st = err_code(e)
                probe(key, "enforced" if st == 412 else "error", f"second PUT -> {st} {code}")
        # If-Match on PUT: which forms of the current ETag are honoured? Summarised as e.g.
        # "wrong:412 quoted:412 unquoted:200 star:200" (status of a PUT with that If-Match value).
        for bucket, key in ((plain_bucket, "if_match"), (lock_bucket, "if_match_versioned")):
            k = f"cond/{key}"
            etag = s3.put_object(Bucket=bucket, Key=k, Body=b"v0")["ETag"]
            seen = []
            for label in ("wrong", "quoted", "unquoted", "star"):
                value = {"wrong": '"0123456789abcdef0123456789abcdef"', "quoted": etag,
                         "unquoted": etag.strip('"'), "star": "*"}[label]
                try:
                    etag = s3.put_object(Bucket=bucket, Key=k, Body=label.encode(), IfMatch=value)["ETag"]
                    seen.append(f"{label}:200")
                except ClientError as e:
                    seen.append(f"{label}:{err_code(e)[1]}")
            probe(key, " ".join(seen), "status of PUT with If-Match: wrong ETag, current ETag quoted "
                  "(the standard form), current ETag without quotes, *")

    conditional()

    # --- clock skew tolerance
    @check("clock-skew")
    def skew_probe():
        base = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=skew)
        for name, minutes in (("skew_14min", -14), ("skew_16min", -16), ("skew_future_14min", 14),
                              ("skew_future_16min", 16)):
            st, _, rb = raw("GET", "/", when=base + dt.timedelta(minutes=minutes))
            code = rb.split(b"<Code>")[1].split(b"</Code>")[0].decode() if b"<Code>" in rb else ""
            probe(name, "accepted" if st == 200 else "rejected",
                  f"request signed {abs(minutes)} min in the {'past' if minutes < 0 else 'future'} -> {st} {code}".rstrip())

    skew_probe()

    # --- cleanup of what can be cleaned up
    if not args.keep:
        try:
            left = []
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=plain_bucket):
                left += [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            for i in range(0, len(left), 1000):
                s3.delete_objects(Bucket=plain_bucket, Delete={"Objects": left[i:i + 1000], "Quiet": True})
            s3.delete_bucket(Bucket=plain_bucket)
        except ClientError as e:
            print(f"s3-smoke: could not remove {plain_bucket}: {e}", file=sys.stderr)
    print(f"s3-smoke: left behind (locked objects): {lock_bucket}", flush=True)
    return finish(t_start)


def finish(t_start):
    failed = [r for r in RESULTS if not r[0]]
    if FINDINGS:
        print("s3-smoke: findings " + json.dumps(FINDINGS, sort_keys=True))
    print(f"s3-smoke: {len(RESULTS) - len(failed)} passed, {len(failed)} failed in {time.time() - t_start:.1f} s")
    return 1 if failed or not RESULTS else 0


if __name__ == "__main__":
    sys.exit(main())
