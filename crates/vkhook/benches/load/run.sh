#!/usr/bin/env bash
# The load benchmark: wrk (Debian package) against a bare hyper handler and against vkhook as users run it, in the
# same run, on the same machine. Release build, 64 connections, 2 threads, 10 s each.
#
#   crates/vkhook/benches/load/run.sh [bot-on] [bot-off] [likes] [burst] [stripped] [pg-bot-on] [pg-bot-off]
#                                     [pg-likes] [pg-burst] [postgres] [postgres2] [forward] [forward-bench] [ceiling]
#   (default: bot-on bot-off likes burst stripped)
#
# bot-on, bot-off, likes: the product (examples/product_target.rs): `vkhook sandbox` in its own process,
#   `vkhook serve --role all` against it, community 1001 connected through the real flow (VK ID sign-in, the
#   button, the community consent, VK's confirmation) with the bot on as connected; bot-off then unticks both
#   switches; likes sends 80 % like_add. Each line also gives the server's CPU per request, the backlog when the
#   load stops and how long it takes to drain (up to DRAIN_MAX seconds; the bot replies at VK's 20 calls/s).
# burst: the same product; 100 000 pending like_add events of 1001 stored at once (as an instance leaves them when it
#   could not decide at ingest), timed until the workers have finished them all — events that need no VK call.
# forward: bot off, and an endpoint (a local receiver answering 204 at once, added through the card's form) gets every
#   event: ingest while forwarding runs; the line also gives the forwarding backlog at the end and its drain.
# forward-bench: forwarding itself (product_target --forward): the time from `ok` to the endpoint having the event at
#   500 events/s, and the rate at which a stored burst of FORWARD_BURST events reaches the endpoint.
# ceiling: no vkhook code at all (ceiling/): parse the JSON, make the event durable, answer ok — appended to a file
#   with one fdatasync per group, and inserted into SQLite (rusqlite, its own thread); PostgreSQL too when
#   VKHOOK_LOAD_PG is set. What any durable receiver can reach on this machine.
# stripped: the receiver alone (examples/load_target.rs, --role web: no workers) — a ceiling, not the product.
# pg-* modes: the same product cases on PostgreSQL; they and the postgres modes (stripped target) need
# VKHOOK_LOAD_PG=postgres://user@host/db, a scratch database (pg-* drop and create it).
set -euo pipefail
cd "$(dirname "$0")/../../../.."
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
DRAIN_MAX="${DRAIN_MAX:-30}"
MODES=("$@")
[ ${#MODES[@]} -eq 0 ] && MODES=(bot-on bot-off likes burst stripped)
BURST="${BURST:-100000}"
FORWARD_BURST="${FORWARD_BURST:-50000}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

cargo build --release -q -p vkhook --bin vkhook --example load_target --example product_target
BIN=target/release/examples/load_target
PRODUCT=target/release/examples/product_target
LUA=crates/vkhook/benches/load/events.lua
OUT=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$OUT"' EXIT

start() { # name program args... → sets PORT SECRET PID (and LAUNCHER: the process to stop)
  local name=$1; shift
  "$@" > "$OUT/$name.out" 2> "$OUT/$name.err" &
  LAUNCHER=$!
  for _ in $(seq 1 600); do
    if grep -q '^READY' "$OUT/$name.out" 2>/dev/null; then break; fi
    sleep 0.05
  done
  local ready
  ready=$(grep '^READY' "$OUT/$name.out" | sed 's/^READY //')
  PORT=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["port"])' "$ready")
  SECRET=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["secret"])' "$ready")
  PID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["pid"])' "$ready")
}

load() { # name port secret [mix] → wrk output in $OUT/name.wrk
  VKHOOK_LOAD_MIX="${4:-}" VKHOOK_LOAD_SECRET="$3" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$LUA" "http://127.0.0.1:$2" > "$OUT/$1.wrk"
}

cpu_ticks() { # pid → user+system clock ticks so far
  awk '{print $14 + $15}' "/proc/$1/stat"
}

metric() { # port name → the metric's value (0 when absent)
  curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2; found=1} END {if (!found) print 0}'
}

summary() { # label wrk-file... pid... [extra text in $EXTRA]
  EXTRA="${EXTRA:-}" BARE_RPS="${BARE_RPS:-}" python3 - "$@" <<'PY'
import os, re, sys
label = sys.argv[1]
files = [a for a in sys.argv[2:] if a.endswith(".wrk")]
pids = [a for a in sys.argv[2:] if not a.endswith(".wrk")]
rps, p50s, p99s, bad, total = 0.0, [], [], 0, 0
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
for f in files:
    text = open(f).read()
    rps += float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    total += int(re.search(r"(\d+) requests in", text).group(1))
    for pct, store in (("50", p50s), ("99", p99s)):
        m = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)" % pct, text)
        store.append(ms(m.group(1), m.group(2)))
    m = re.search(r"NOT_OK (\d+)", text)
    bad += int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    bad += int(m.group(1)) if m else 0
rss = 0
for pid in pids:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                rss += int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
bare = float(os.environ["BARE_RPS"]) if os.environ.get("BARE_RPS") else None
times = f"  x{rps / bare:4.2f} bare" if bare else ""
print(f"{label:<30} {rps:>8.0f} req/s{times}   p50 {max(p50s):6.2f} ms   p99 {max(p99s):6.2f} ms   "
      f"peak RSS {rss:6.1f} MiB   not ok {bad}/{total}{os.environ['EXTRA']}")
PY
}

product() { # label bot mix [database-url] [depth metric] [extra product_target flags...]
  local db=()
  [ -n "${4:-}" ] && db=(--database-url "$4")
  local gauge="${5:-vkhook_inbox_depth}"
  start "$1" "$PRODUCT" --bot "$2" "${db[@]}" "${@:6}"
  local cpu0 cpu1 total depth start_ns drained
  cpu0=$(cpu_ticks "$PID")
  load "$1" "$PORT" "$SECRET" "$3"
  cpu1=$(cpu_ticks "$PID")
  depth=$(metric "$PORT" "$gauge")
  start_ns=$(date +%s%N); drained="not drained in ${DRAIN_MAX} s"
  while [ "$(( ($(date +%s%N) - start_ns) / 1000000000 ))" -lt "$DRAIN_MAX" ]; do
    if [ "$(metric "$PORT" "$gauge")" = "0" ]; then
      drained="drained in $(( ($(date +%s%N) - start_ns) / 1000000 )) ms"; break
    fi
    sleep 0.2
  done
  local left; left=$(metric "$PORT" "$gauge")
  total=$(grep -oE '[0-9]+ requests in' "$OUT/$1.wrk" | awk '{print $1}')
  local hz; hz=$(getconf CLK_TCK)
  EXTRA="   CPU $(( (cpu1 - cpu0) * 1000000 / hz / (total > 0 ? total : 1) )) us/req   backlog at end ${depth}, ${drained} (left ${left})" \
    summary "$1" "$OUT/$1.wrk" "$PID"
  kill "$LAUNCHER"; wait "$LAUNCHER" 2>/dev/null || true
}

burst() { # label [database-url]
  local db=()
  [ -n "${2:-}" ] && db=(--database-url "$2")
  "$PRODUCT" --bot on --burst "$BURST" "${db[@]}" > "$OUT/burst.out" 2> "$OUT/burst.err" &
  local launcher=$!
  for _ in $(seq 1 1200); do
    if grep -q '^READY' "$OUT/burst.out" 2>/dev/null; then break; fi
    sleep 0.1
  done
  python3 - "$1" "$(grep '^BURST' "$OUT/burst.out" | sed 's/^BURST //')" <<'PY'
import json, sys
b = json.loads(sys.argv[2])
rate = b["events"] / ((b["stored_ms"] + b["finished_ms"]) / 1000)
print(f"{sys.argv[1]:<30} {b['events']} pending events stored in {b['stored_ms']} ms, all finished "
      f"{b['finished_ms'] / 1000:.1f} s after the burst's end ({rate:.0f} events/s through the workers)")
PY
  kill "$launcher"; wait "$launcher" 2>/dev/null || true
}

fresh_pg_db() { # drops and creates the scratch database $VKHOOK_LOAD_PG: a fresh one for each PostgreSQL case
  : "${VKHOOK_LOAD_PG:?set VKHOOK_LOAD_PG to a scratch PostgreSQL database URL}"
  python3 - "$VKHOOK_LOAD_PG" <<'PY'
import subprocess, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1]); name = u.path.lstrip("/")
admin = u._replace(path="/postgres").geturl()
for sql in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
    subprocess.run(["psql", admin, "-qc", sql], check=True)
PY
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, ~1 KB message_new/wall_reply_new bodies, unique event_ids"
echo

start bare "$BIN" bare --port 0
load bare "$PORT" ""
BARE_PID=$PID
summary "bare hyper handler" "$OUT/bare.wrk" "$BARE_PID"
BARE_RPS=$(grep -oE 'Requests/sec:\s+[0-9.]+' "$OUT/bare.wrk" | awk '{print $2}')
export BARE_RPS
kill "$BARE_PID"; wait "$BARE_PID" 2>/dev/null || true

for mode in "${MODES[@]}"; do
  case "$mode" in
    bot-on) product "vkhook, bot on (as connected)" on "" ;;
    bot-off) product "vkhook, bot off" off "" ;;
    forward) product "vkhook, bot off, forwarding" off "" "" vkhook_forward_depth --endpoint ;;
    forward-bench)
      "$PRODUCT" --bot off --forward "$FORWARD_BURST" > "$OUT/forward.out" 2> "$OUT/forward.err"
      python3 - "$(grep '^FORWARD' "$OUT/forward.out" | sed 's/^FORWARD //')" <<'PY'
import json, sys
f = json.loads(sys.argv[1])
print(f"{'forwarding latency':<30} {f['latency_events']} events at {f['rate']}/s: ok → endpoint p50 {f['p50_ms']} ms, "
      f"p99 {f['p99_ms']} ms, max {f['max_ms']} ms")
print(f"{'forwarding throughput':<30} {f['burst_events']} stored events reached the endpoint in "
      f"{f['forwarded_ms'] / 1000:.1f} s: {f['events_per_s']} events/s")
PY
      ;;
    likes) product "vkhook, 80 % like_add, bot on" on likes ;;
    burst) burst "vkhook, burst, no VK call" ;;
    pg-bot-on|pg-bot-off|pg-likes|pg-burst)
      fresh_pg_db
      case "$mode" in
        pg-bot-on) product "PostgreSQL, bot on" on "" "$VKHOOK_LOAD_PG" ;;
        pg-bot-off) product "PostgreSQL, bot off" off "" "$VKHOOK_LOAD_PG" ;;
        pg-likes) product "PostgreSQL, 80 % like_add" on likes "$VKHOOK_LOAD_PG" ;;
        pg-burst) burst "PostgreSQL, burst, no VK call" "$VKHOOK_LOAD_PG" ;;
      esac
      ;;
    ceiling)
      # No vkhook code: the most any receiver that makes an event durable before `ok` reaches here (ceiling/).
      cargo build --release -q --manifest-path crates/vkhook/benches/load/ceiling/Cargo.toml --target-dir target/ceiling
      ceilings=(log sqlite)
      [ -n "${VKHOOK_LOAD_PG:-}" ] && ceilings+=(pg)
      for c in "${ceilings[@]}"; do
        [ "$c" = pg ] && fresh_pg_db
        start "ceiling-$c" target/ceiling/release/ceiling "$c" --port 0
        load "ceiling-$c" "$PORT" ""
        summary "ceiling: $c (no vkhook code)" "$OUT/ceiling-$c.wrk" "$PID"
        kill "$PID"; wait "$PID" 2>/dev/null || true
      done
      ;;
    stripped|sqlite)
      start vk "$BIN" vkhook --port 0
      load vk "$PORT" "$SECRET"
      summary "receiver only (stripped, web)" "$OUT/vk.wrk" "$PID"
      kill "$PID"; wait "$PID" 2>/dev/null || true
      ;;
    postgres)
      : "${VKHOOK_LOAD_PG:?set VKHOOK_LOAD_PG to a scratch PostgreSQL database URL}"
      start pg "$BIN" vkhook --port 0 --database-url "$VKHOOK_LOAD_PG"
      load pg "$PORT" "$SECRET"
      summary "vkhook, PostgreSQL x1" "$OUT/pg.wrk" "$PID"
      kill "$PID"; wait "$PID" 2>/dev/null || true
      ;;
    postgres2)
      : "${VKHOOK_LOAD_PG:?set VKHOOK_LOAD_PG to a scratch PostgreSQL database URL}"
      start pga "$BIN" vkhook --port 0 --database-url "$VKHOOK_LOAD_PG"; PA=$PORT; SA=$SECRET; PIDA=$PID
      start pgb "$BIN" vkhook --port 0 --database-url "$VKHOOK_LOAD_PG"; PB=$PORT; PIDB=$PID
      # Both instances share one database, so the secret instance B set is the one both accept.
      SB=$SECRET
      # Round robin: half the connections (and one wrk thread) to each instance.
      VKHOOK_LOAD_SECRET="$SB" wrk -t1 -c$((CONNECTIONS / 2)) -d"$DURATION" --latency -s "$LUA" "http://127.0.0.1:$PA" > "$OUT/pga.wrk" &
      VKHOOK_LOAD_SECRET="$SB" wrk -t1 -c$((CONNECTIONS / 2)) -d"$DURATION" --latency -s "$LUA" "http://127.0.0.1:$PB" > "$OUT/pgb.wrk"
      wait %?wrk 2>/dev/null || true
      summary "vkhook, PostgreSQL x2" "$OUT/pga.wrk" "$OUT/pgb.wrk" "$PIDA" "$PIDB"
      kill "$PIDA" "$PIDB"; wait "$PIDA" "$PIDB" 2>/dev/null || true
      ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
done
