#!/usr/bin/env python3
"""The tarpit attack, replayed against the real `vkhook demo` binary with its own numbers (issue 22).

An attacker administers several communities and gives each as many forwarding endpoints as vkhook allows, all at a
server that accepts connections and never answers (each attempt hangs until vkhook's 15 s timeout), and keeps its
communities busy with events. Another admin's test event is then timed, again and again: from pressing
«Отправить тестовое событие» to the event arriving at their own endpoint. Before the attack the same is timed as a
baseline. Only Python's standard library: nothing of vkhook's own test code is used.

    cargo build --release -p vkhook --bin vkhook
    python3 crates/vkhook/benches/tarpit.py [--communities 5] [--rounds 20] [--binary target/release/vkhook]

The attacker is «Анна Админова» (1001, 1002 and the demo's extra communities 2001…); the victim is «Пётр Соседов»
with 1004.
"""

import argparse
import http.cookiejar
import http.server
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """A cookie-keeping client that does not follow redirects (as the tests' Driver)."""

    def __init__(self, base):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, url, data=None):
        if not url.startswith("http"):
            url = self.base + url
        body = None
        if data is not None:
            body = urllib.parse.urlencode(data, doseq=True).encode()
        req = urllib.request.Request(url, data=body)
        try:
            with self.opener.open(req, timeout=30) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()

    def csrf(self, page):
        _, _, html = self.request(page)
        m = re.search(r'name="csrf" value="([^"]+)"', html)
        return m.group(1) if m else ""

    def post(self, page, path, fields):
        return self.request(path, list(fields) + [("csrf", self.csrf(page))])


def consent(authorize_url, user_id):
    """Answers a sandbox consent page as `user_id` with «Разрешить» and everything ticked; returns the redirect."""
    url = urllib.parse.urlparse(authorize_url)
    query = urllib.parse.parse_qsl(url.query)
    form = list(query) + [("user_id", str(user_id)), ("decision", "allow")]
    for name, value in query:
        if name == "scope":
            form += [("grant", s) for s in re.split(r"[ ,]", value) if s]
        if name == "group_ids":
            form += [("community", g) for g in value.split(",") if g]
    action = f"{url.scheme}://{url.netloc}{url.path}"
    req = urllib.request.Request(action, data=urllib.parse.urlencode(form).encode())
    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(req, timeout=30)
    except urllib.error.HTTPError as e:
        return e.headers["location"]
    raise RuntimeError("no redirect after the consent")


def sign_in(browser, user_id):
    status, headers, _ = browser.request("/auth/vk/login")
    assert status == 303, status
    back = consent(headers["location"], user_id)
    status, headers, _ = browser.request(back)
    assert status == 303 and headers["location"] == "/communities", (status, headers)
    browser.request("/communities")  # the list, read from VK


def connect(browser, group_id, user_id):
    page = f"/communities/{group_id}"
    status, headers, _ = browser.post(page, f"{page}/connect", [])
    assert status == 303, status
    location = headers["location"]
    if "/oauth/" in location:
        back = consent(location, user_id)
        browser.request(back)
    deadline = time.time() + 30
    while time.time() < deadline:
        _, _, html = browser.request(f"{page}/setup")
        if "Callback API подключен" in html:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{group_id} did not connect")


def add_endpoint(browser, group_id, url):
    page = f"/communities/{group_id}"
    status, headers, _ = browser.post(page, f"{page}/endpoints", [("url", url), ("name", "СРОЧНО")])
    if status != 303:
        return None
    return headers["location"].split("/endpoints/")[1].split("?")[0].split("#")[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tarpit():
    """Accepts connections and never answers; returns (url, the connections counter)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1024)
    held, count = [], [0]

    def serve():
        while True:
            conn, _ = server.accept()
            count[0] += 1
            held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/hook", count


def good_endpoint():
    """Answers 204 and records when each test event arrived; returns (url, arrivals by event_id)."""
    arrivals = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            event = json.loads(body)
            arrivals[event.get("event_id", "")] = time.monotonic()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/hook", arrivals


def time_test_events(browser, group_id, endpoint, arrivals, rounds):
    """Presses «Отправить тестовое событие» `rounds` times; the seconds each took to arrive."""
    page = f"/communities/{group_id}/endpoints/{endpoint}"
    took = []
    for _ in range(rounds):
        before = set(k for k in arrivals if k.startswith("test-"))
        started = time.monotonic()
        status, _, _ = browser.post(page, f"{page}/test", [])
        if status == 429:  # the test events' own limit: wait it out
            time.sleep(6)
            continue
        deadline = started + 60
        while time.monotonic() < deadline:
            new = [k for k in arrivals if k.startswith("test-") and k not in before]
            if new:
                took.append(arrivals[new[0]] - started)
                break
            time.sleep(0.005)
        else:
            took.append(float("inf"))
        time.sleep(6.1)  # ten test events a minute per community
    return took


def summary(took):
    finite = sorted(t for t in took if t != float("inf"))
    lost = len(took) - len(finite)
    if not finite:
        return f"none arrived within 60 s ({lost} lost)"
    p95 = finite[min(len(finite) - 1, int(len(finite) * 0.95))]
    return (f"n={len(took)} p50 {statistics.median(finite) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
            f"max {max(finite) * 1000:.1f} ms, not arrived within 60 s: {lost}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default="target/release/vkhook")
    parser.add_argument("--communities", type=int, default=5, help="attacker's communities (1001, 1002, 2001…)")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    extra = max(0, args.communities - 2)
    app_port, sandbox_port = free_port(), free_port()
    data = tempfile.mkdtemp(prefix="vkhook-tarpit-")
    demo = subprocess.Popen(
        [args.binary, "demo", "--port", str(app_port), "--sandbox-port", str(sandbox_port), "--data-dir", data,
         "--extra-communities", str(extra)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base, sandbox = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{sandbox_port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        victim = Browser(base)
        sign_in(victim, 3)
        connect(victim, 1004, 3)
        good_url, arrivals = good_endpoint()
        good = add_endpoint(victim, 1004, good_url)
        victim.request(f"/communities/1004/endpoints/{good}")  # the secret's one showing
        baseline = time_test_events(victim, 1004, good, arrivals, max(3, args.rounds // 3))

        attacker = Browser(base)
        sign_in(attacker, 1)
        groups = [1001, 1002] + [2001 + i for i in range(extra)]
        groups = groups[: args.communities]
        pit_url, connections = tarpit()
        endpoints, refused = 0, 0
        for g in groups:
            connect(attacker, g, 1)
            while add_endpoint(attacker, g, pit_url):
                endpoints += 1
            refused += 1  # the first refused one: the cap
        stop = threading.Event()

        def noise():
            i = 0
            while not stop.is_set():
                for g in groups:
                    body = json.dumps({"group_id": g, "from_id": 2, "text": f"шум {i}"}).encode()
                    req = urllib.request.Request(sandbox + "/_sandbox/comments", data=body,
                                                 headers={"content-type": "application/json"})
                    try:
                        urllib.request.urlopen(req, timeout=5)
                    except OSError:
                        pass
                i += 1
                time.sleep(0.5)

        threading.Thread(target=noise, daemon=True).start()
        time.sleep(3)  # the tarpit fills up
        under_attack = time_test_events(victim, 1004, good, arrivals, args.rounds)
        stop.set()
        print(f"attacker: {len(groups)} communities, {endpoints} endpoints at a tarpit "
              f"({endpoints // len(groups)} each, the next one refused), their own comments every 0.5 s; "
              f"{connections[0]} connections were made to the tarpit")
        print(f"victim's test event, no attack:    {summary(baseline)}")
        print(f"victim's test event, under attack: {summary(under_attack)}")
    finally:
        demo.terminate()
        try:
            demo.wait(20)  # it finishes the batches it holds (a tarpit attempt takes up to 15 s)
        except subprocess.TimeoutExpired:
            demo.kill()


if __name__ == "__main__":
    sys.exit(main())
