#!/usr/bin/env python3
"""s3-faultproxy.py - an HTTP/1.1 forwarding proxy between an S3 client and an S3 server that
logs every request and injects faults by rule. Standard library only. See README.md.

    s3-faultproxy.py --upstream 127.0.0.1:7480 [--port 0] [--log FILE] [--stats FILE]
                     [--rules JSON | --rules-file FILE]

It listens on 127.0.0.1 (an ephemeral port by default) and prints `PORT <n>` as its first line
on stdout once it accepts connections. Requests are forwarded verbatim (request line, headers
and body bytes unchanged, so SigV4 signatures stay valid); every request gets a fresh upstream
connection, the client connection is kept alive.

Rules (a JSON list; the first rule that matches a request and fires decides):

    {"method": "PUT",              # optional, exact (case-insensitive)
     "path": "/data/",             # optional regex, searched in the path (no query)
     "query": "partNumber=",       # optional regex, searched in the query string
     "nth": [1, 3] | "all",        # which matching requests (1-based, per rule) fire; default "all"
     "action": "status" | "stall" | "stall_mid_body" | "drop_mid_body",
     "status": 503,                # for "status" (an S3 XML error body is sent)
     "secs": 10}                   # for the stalls

  status          read the whole request, answer with `status` (not forwarded)
  stall           read the whole request, send nothing for `secs`, then close (not forwarded)
  stall_mid_body  read half of the body, send nothing for `secs`, then close (not forwarded)
  drop_mid_body   forward the headers and half of the body upstream, then close both
                  connections abruptly (RST)

The proxy answers a few requests itself (never forwarded):

  GET /__stats    the statistics below, as JSON
  PUT /__rules    replace the rules with the JSON list in the body (counters restart)

Statistics: {"requests": n, "by_status": {"200": n, ...}, "by_method_status": {"PUT 200": n,
"DELETE 403": n, ...}, "injected": {"status": n, "stall": n, ...}}; responses that were injected
count under their status too ("PUT 503"), stalls and drops only under "injected". Written to
--stats on SIGTERM/SIGINT (then the proxy exits 0).

Log (--log, JSON lines, one per request, appended when it finishes): {"t": unix time, "method",
"path", "query", "headers": [lower-case names], "status": int or null, "action": null or the
injected action, "rule": index or null, "body_bytes": n}. Stalls are logged when the stall begins.
"""

import argparse
import json
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time

LOCK = threading.Lock()
STATS = {"requests": 0, "by_status": {}, "by_method_status": {}, "injected": {}}
RULES = []  # list of (rule dict, compiled path re, compiled query re, counter list)
ARGS = None


def set_rules(rules):
    global RULES
    if not isinstance(rules, list):
        raise ValueError("rules must be a JSON list")
    compiled = []
    for r in rules:
        if not isinstance(r, dict):
            raise ValueError("every rule must be a JSON object")
        action = r.get("action", "status")
        if action not in ("status", "stall", "stall_mid_body", "drop_mid_body"):
            raise ValueError(f"unknown action {action!r}")
        compiled.append((r, re.compile(r.get("path", "")), re.compile(r.get("query", "")), [0]))
    with LOCK:
        RULES = compiled


def pick_rule(method, path, query):
    """The rule that fires for this request (and its index), counting matches per rule."""
    with LOCK:
        for i, (r, pre, qre, count) in enumerate(RULES):
            if "method" in r and r["method"].upper() != method.upper():
                continue
            if not pre.search(path) or not qre.search(query):
                continue
            count[0] += 1
            nth = r.get("nth", "all")
            if nth == "all" or count[0] in nth:
                return i, r
        return None, None


def count(method, status, injected=None):
    with LOCK:
        STATS["requests"] += 1
        if status is not None:
            s = str(status)
            STATS["by_status"][s] = STATS["by_status"].get(s, 0) + 1
            k = f"{method} {s}"
            STATS["by_method_status"][k] = STATS["by_method_status"].get(k, 0) + 1
        if injected:
            STATS["injected"][injected] = STATS["injected"].get(injected, 0) + 1


def stats_json():
    with LOCK:
        return json.dumps(STATS, sort_keys=True)


def log(entry):
    if not ARGS.log:
        return
    line = json.dumps(entry, sort_keys=True) + "\n"
    with LOCK:
        with open(ARGS.log, "a", encoding="utf-8") as f:
            f.write(line)


def write_stats():
    if ARGS.stats:
        tmp = ARGS.stats + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(stats_json())
        os.replace(tmp, ARGS.stats)


class Closed(Exception):
    pass


class Conn:
    """A buffered reader over a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise Closed()
        self.buf += data

    def read_head(self):
        """Bytes up to and including the blank line ending a header block."""
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise Closed()
            self.fill()
        i = self.buf.index(b"\r\n\r\n") + 4
        head, self.buf = self.buf[:i], self.buf[i:]
        return head

    def read_line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        i = self.buf.index(b"\r\n") + 2
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def read_some(self, n):
        """Up to n bytes (at least 1)."""
        if not self.buf:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_exact(self, n):
        parts = []
        while n > 0:
            b = self.read_some(n)
            parts.append(b)
            n -= len(b)
        return b"".join(parts)


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0]
    headers = []
    for l in lines[1:]:
        if not l:
            continue
        name, _, value = l.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    return first, headers


def header(headers, name):
    for n, v in headers:
        if n == name:
            return v
    return None


def body_chunks(conn, headers, limit=None):
    """Yields the raw bytes of a message body (Content-Length or chunked framing), verbatim.
    With `limit`, stops after about that many bytes."""
    te = (header(headers, "transfer-encoding") or "").lower()
    sent = 0
    if "chunked" in te:
        while True:
            line = conn.read_line()
            yield line
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    t = conn.read_line()
                    yield t
                    if t == b"\r\n":
                        return
            data = conn.read_exact(size + 2)
            yield data
            sent += len(data)
            if limit is not None and sent >= limit:
                return
    n = int(header(headers, "content-length") or "0")
    while n > 0:
        want = n if limit is None else min(n, max(1, limit - sent))
        b = conn.read_some(min(want, 65536))
        yield b
        n -= len(b)
        sent += len(b)
        if limit is not None and sent >= limit:
            return


def body_length(headers):
    return int(header(headers, "content-length") or "0")


REASONS = {500: "Internal Server Error", 503: "Service Unavailable", 403: "Forbidden", 404: "Not Found",
           400: "Bad Request", 200: "OK", 204: "No Content"}
CODES = {500: "InternalError", 503: "SlowDown", 403: "AccessDenied", 404: "NoSuchKey", 400: "InvalidRequest"}


def send_status(client, status, keep_alive=True, body=None, ctype="application/xml"):
    if body is None:
        code = CODES.get(status, "InjectedError")
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                f"<Message>injected by s3-faultproxy</Message></Error>").encode()
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Injected')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nDate: {date}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n").encode()
    client.sendall(head + body)


def rst_close(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def relay_response(up, client, method):
    """Reads one final response from upstream and sends it to the client verbatim.
    Returns (status, close_after)."""
    while True:
        head = up.read_head()
        first, headers = parse_head(head)
        status = int(first.split()[1])
        if 100 <= status < 200:
            continue  # interim (100 Continue): the proxy already answered Expect itself
        break
    client.sendall(head)
    close = (header(headers, "connection") or "").lower() == "close"
    if method == "HEAD" or status in (204, 304):
        return status, close
    if "chunked" in (header(headers, "transfer-encoding") or "").lower() or header(headers, "content-length"):
        for b in body_chunks(up, headers):
            client.sendall(b)
        return status, close
    # No framing: the body runs until upstream closes.
    try:
        while True:
            client.sendall(up.read_some(65536))
    except Closed:
        pass
    return status, True


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = Conn(sock)
        try:
            while self.one(client):
                pass
        except (Closed, ConnectionError, OSError):
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def one(self, client):
        """Handles one request; returns whether the client connection stays open."""
        head = client.read_head()
        first, headers = parse_head(head)
        method, target, _ = (first.split(" ", 2) + ["", ""])[:3]
        path, _, query = target.partition("?")
        entry = {"t": time.time(), "method": method, "path": path, "query": query,
                 "headers": [n for n, _ in headers], "status": None, "action": None, "rule": None,
                 "body_bytes": body_length(headers)}
        sock = client.sock
        wants_close = (header(headers, "connection") or "").lower() == "close"
        if (header(headers, "expect") or "").lower() == "100-continue":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

        # The proxy's own endpoints.
        if path == "/__stats":
            for _ in body_chunks(client, headers):
                pass
            send_status(sock, 200, keep_alive=False, body=stats_json().encode(), ctype="application/json")
            return False
        if path == "/__rules" and method == "PUT":
            body = b"".join(body_chunks(client, headers))
            try:
                set_rules(json.loads(body or b"[]"))
                send_status(sock, 200, keep_alive=False, body=b"{}", ctype="application/json")
            except ValueError as e:
                send_status(sock, 400, keep_alive=False, body=json.dumps({"error": str(e)}).encode(),
                            ctype="application/json")
            return False

        idx, rule = pick_rule(method, path, query)
        action = rule.get("action", "status") if rule else None
        entry["rule"], entry["action"] = idx, action
        try:
            if action == "status":
                for _ in body_chunks(client, headers):
                    pass
                status = int(rule.get("status", 503))
                send_status(sock, status, keep_alive=not wants_close)
                entry["status"] = status
                count(method, status, action)
                return not wants_close
            if action in ("stall", "stall_mid_body"):
                limit = None if action == "stall" else max(1, body_length(headers) // 2)
                for _ in body_chunks(client, headers, limit):
                    pass
                count(method, None, action)
                log(entry)
                entry = None
                time.sleep(float(rule.get("secs", 30)))
                rst_close(sock)
                return False
            up_sock = socket.create_connection((ARGS.up_host, ARGS.up_port), timeout=300)
            up_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                up_sock.sendall(head)
                if action == "drop_mid_body":
                    limit = max(1, body_length(headers) // 2)
                    for b in body_chunks(client, headers, limit):
                        up_sock.sendall(b)
                    count(method, None, action)
                    rst_close(up_sock)
                    rst_close(sock)
                    return False
                for b in body_chunks(client, headers):
                    up_sock.sendall(b)
                status, close = relay_response(Conn(up_sock), sock, method)
            finally:
                try:
                    up_sock.close()
                except OSError:
                    pass
            entry["status"] = status
            count(method, status)
            return not (close or wants_close)
        finally:
            if entry is not None:
                log(entry)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    global ARGS
    p = argparse.ArgumentParser(description="S3 fault-injecting forwarding proxy")
    p.add_argument("--upstream", required=True, help="HOST:PORT of the S3 server (plain HTTP)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--log", help="append one JSON line per request to this file")
    p.add_argument("--stats", help="write the statistics (JSON) here on SIGTERM/SIGINT")
    p.add_argument("--rules", help="rules as a JSON list")
    p.add_argument("--rules-file", help="rules from this JSON file")
    ARGS = p.parse_args()
    host, _, port = ARGS.upstream.rpartition(":")
    ARGS.up_host, ARGS.up_port = host or "127.0.0.1", int(port)
    rules = []
    if ARGS.rules:
        rules = json.loads(ARGS.rules)
    elif ARGS.rules_file:
        with open(ARGS.rules_file, encoding="utf-8") as f:
            rules = json.load(f)
    set_rules(rules)

    srv = Server(("127.0.0.1", ARGS.port), Handler)

    def stop(_sig, _frame):
        try:
            write_stats()
        finally:
            os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"PORT {srv.server_address[1]}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
