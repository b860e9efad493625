#!/usr/bin/env bash
# The receiver's load benchmark: wrk (Debian package) against a bare hyper handler and against vkhook's durable
# receiver, in the same run, on the same machine. Release build, 64 connections, 2 threads, 10 s each.
#
#   crates/vkhook/benches/load/run.sh [sqlite] [postgres] [postgres2]   (default: sqlite)
#
# postgres modes need VKHOOK_LOAD_PG=postgres://user@host/db (a scratch database: it is migrated and written to).
# postgres2 runs two vkhook instances on that database behind wrk's round robin (two wrk runs at once, one each).
set -euo pipefail
cd "$(dirname "$0")/../../../.."
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
MODES=("$@")
[ ${#MODES[@]} -eq 0 ] && MODES=(sqlite)
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

cargo build --release -q -p vkhook --example load_target
BIN=target/release/examples/load_target
LUA=crates/vkhook/benches/load/events.lua
OUT=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$OUT"' EXIT

start() { # name args... → sets PORT SECRET PID
  local name=$1; shift
  "$BIN" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err" &
  for _ in $(seq 1 200); do
    if grep -q '^READY' "$OUT/$name.out" 2>/dev/null; then break; fi
    sleep 0.05
  done
  local ready
  ready=$(grep '^READY' "$OUT/$name.out" | sed 's/^READY //')
  PORT=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["port"])' "$ready")
  SECRET=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["secret"])' "$ready")
  PID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["pid"])' "$ready")
}

load() { # name port secret → wrk output in $OUT/name.wrk
  VKHOOK_LOAD_SECRET="$3" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$LUA" "http://127.0.0.1:$2" > "$OUT/$1.wrk"
}

summary() { # label wrk-file... pid...
  python3 - "$@" <<'PY'
import re, sys
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
print(f"{label:<28} {rps:>10.0f} req/s   p50 {max(p50s):6.2f} ms   p99 {max(p99s):6.2f} ms   peak RSS {rss:6.1f} MiB   not ok {bad}/{total}")
PY
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, ~1 KB message_new/wall_reply_new bodies, unique event_ids"
echo

start bare bare --port 0
load bare "$PORT" ""
BARE_PID=$PID
summary "bare hyper handler" "$OUT/bare.wrk" "$BARE_PID"
kill "$BARE_PID"; wait "$BARE_PID" 2>/dev/null || true

for mode in "${MODES[@]}"; do
  case "$mode" in
    sqlite)
      start vk vkhook --port 0
      load vk "$PORT" "$SECRET"
      summary "vkhook, SQLite (durable)" "$OUT/vk.wrk" "$PID"
      kill "$PID"; wait "$PID" 2>/dev/null || true
      ;;
    postgres)
      : "${VKHOOK_LOAD_PG:?set VKHOOK_LOAD_PG to a scratch PostgreSQL database URL}"
      start pg vkhook --port 0 --database-url "$VKHOOK_LOAD_PG"
      load pg "$PORT" "$SECRET"
      summary "vkhook, PostgreSQL x1" "$OUT/pg.wrk" "$PID"
      kill "$PID"; wait "$PID" 2>/dev/null || true
      ;;
    postgres2)
      : "${VKHOOK_LOAD_PG:?set VKHOOK_LOAD_PG to a scratch PostgreSQL database URL}"
      start pga vkhook --port 0 --database-url "$VKHOOK_LOAD_PG"; PA=$PORT; SA=$SECRET; PIDA=$PID
      start pgb vkhook --port 0 --database-url "$VKHOOK_LOAD_PG"; PB=$PORT; PIDB=$PID
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
