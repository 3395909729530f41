#!/usr/bin/env bash
# Benchmark our IAM (and, side by side, the peer: node oidc-provider) with the shared load driver.
# Loopback only, every run bounded in count (-n) and time (--max-seconds).
#
#   bench/run.sh                 # setup + ours (sqlite, postgres x 1, 2 workers) + compare + report
#   bench/run.sh setup           # bench/.venv (driver, py-spy) and bench/var/peer-node (npm ci)
#   bench/run.sh ours [DB W]...  # our server only: e.g. `ours sqlite 1 postgres 2` (default: all 4)
#   bench/run.sh compare [DB]    # the peer (in memory, and on Redis) and ours (DB, 1 worker; the default
#                                  app and an ES256 one) in ONE flows.py invocation
#   bench/run.sh profile [DB]    # py-spy on one pinned worker under the flow load -> results/profile-DB-w1-cC.txt
#                                  (PYSPY_GIL=1: only samples holding the GIL, i.e. CPU, not waits)
#   bench/run.sh cost [DB]...    # server CPU per endpoint at concurrency 1, with and without log lines
#                                  (PROFILE=1: and py-spy each endpoint into bench/var/prof-DB-VARIANT/)
#   bench/run.sh report          # markdown tables from bench/results/*.jsonl
#   bench/run.sh scale [ARGS]    # 1k vs 1M users on PostgreSQL (bench/scale.py; seeds iam_scale_small
#                                  and iam_scale once, minutes) -> results/scale-postgres.jsonl
#
# Env: N_FLOW=500 C_FLOW=16 N_REQ=2000 C_REQ=32 REPEAT=3 MAX_SECONDS=30 WAIT_QUIET=10
#      PORT=8100 PEER_PORT=3000 PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432
#      PEER_REDIS_PORT=3001 (0: no peer on Redis; it flushes PEER_REDIS_URL=redis://127.0.0.1:6379/3)
#      BENCH_PEER_DIR (default ../shared/bench-peer from the repo root)
# Layout: one worker: server on CPU 0 (taskset), driver on CPU 1; two workers: unpinned.
set -euo pipefail
cd "$(dirname "$0")/.."                      # the repository root
ROOT=$PWD
PEER_DIR=$(cd "${BENCH_PEER_DIR:-$ROOT/../shared/bench-peer}" && pwd)
export BENCH_PEER_DIR=$PEER_DIR
IAM=$ROOT/.venv/bin/iam
IAM_PY=$ROOT/.venv/bin/python
DRV=$ROOT/bench/.venv/bin/python
VAR=$ROOT/bench/var
RES=$ROOT/bench/results
N_FLOW=${N_FLOW:-500} C_FLOW=${C_FLOW:-16} N_REQ=${N_REQ:-2000} C_REQ=${C_REQ:-32}
REPEAT=${REPEAT:-3} MAX_SECONDS=${MAX_SECONDS:-30} WAIT_QUIET=${WAIT_QUIET:-10}
PORT=${PORT:-8100} PEER_PORT=${PEER_PORT:-3000} PEER_REDIS_PORT=${PEER_REDIS_PORT:-3001}
PG_URL=${PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432}
BASE=http://127.0.0.1:$PORT
PEER_BASE=http://127.0.0.1:$PEER_PORT
mkdir -p "$VAR" "$RES"

export IAM_ISSUER=$BASE
export IAM_SECRET_KEY=${IAM_SECRET_KEY:-bench-only-secret-key-0123456789abcdef0123}
export IAM_LOG_FORMAT=text
# Outside dev mode the console SMS backend is refused; the benchmark sends no SMS.
export IAM_SMS_BACKEND=${IAM_SMS_BACKEND:-webhook:http://127.0.0.1:9/sms}
# The token endpoint's rate limit (per client and per IP) would throttle the load itself.
export IAM_RATE_LIMITS=${IAM_RATE_LIMITS:-token=100000000/60}
SERVER= PEER= PEER_REDIS=

stop_server() { if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; SERVER=; fi; }
stop_peer() {
  local p; for p in $PEER $PEER_REDIS; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  PEER= PEER_REDIS=
}
trap 'stop_server; stop_peer' EXIT

setup() {
  if [ ! -x "$DRV" ]; then
    python3 -m venv "$ROOT/bench/.venv"
    "$ROOT/bench/.venv/bin/pip" install -q -r "$PEER_DIR/requirements.txt" py-spy
  fi
  if [ ! -d "$VAR/peer-node/node_modules" ]; then
    rm -rf "$VAR/peer-node"
    cp -r "$PEER_DIR/peer-node" "$VAR/peer-node"
    chmod -R u+w "$VAR/peer-node"
    (cd "$VAR/peer-node" && npm ci --silent)
  fi
  [ -x "$IAM" ] || { echo "no $IAM: run 'make install' first" >&2; exit 1; }
}

wait_url() {  # $1 URL, $2 what; 20 s at most
  for _ in $(seq 100); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "$2 did not answer at $1" >&2; exit 1
}

json_field() { "$IAM_PY" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

prepare_db() {  # $1 sqlite|postgres; sets IAM_DATABASE_URL, migrates, seeds; sets CLIENT_ID SECRET COOKIE
  case $1 in
    sqlite)
      rm -f "$VAR"/iam-bench.db "$VAR"/iam-bench.db-wal "$VAR"/iam-bench.db-shm
      export IAM_DATABASE_URL=sqlite:///$VAR/iam-bench.db ;;
    postgres)
      local admin=${PG_URL#postgresql+psycopg://}
      psql -q -v ON_ERROR_STOP=1 "postgresql://$admin/postgres" \
        -c "DROP DATABASE IF EXISTS iam_bench WITH (FORCE)" -c "CREATE DATABASE iam_bench"
      export IAM_DATABASE_URL=$PG_URL/iam_bench ;;
    *) echo "unknown database $1 (sqlite|postgres)" >&2; exit 2 ;;
  esac
  "$IAM" db upgrade >/dev/null
  local seeded; seeded=$("$IAM_PY" "$ROOT/bench/seed.py")
  CLIENT_ID=$(json_field "$seeded" client_id)
  SECRET=$(json_field "$seeded" client_secret)
  COOKIE=$(json_field "$seeded" session_cookie)
  # the same, for an app whose access tokens are ES256 (compare measures it as a second target)
  seeded=$("$IAM_PY" "$ROOT/bench/seed.py" bench-es256 ES256)
  ES_CLIENT_ID=$(json_field "$seeded" client_id)
  ES_SECRET=$(json_field "$seeded" client_secret)
  ES_COOKIE=$(json_field "$seeded" session_cookie)
}

start_server() {  # $1 workers, $2 log file; one worker is pinned to CPU 0
  if [ "$1" = 1 ]; then
    taskset -c 0 "$IAM" serve --port "$PORT" --workers 1 >"$2" 2>&1 &
  else
    "$IAM" serve --port "$PORT" --workers "$1" >"$2" 2>&1 &
  fi
  SERVER=$!
  wait_url "$BASE/readyz" "iam"
}

start_peer() {  # pinned to CPU 0; and the same peer keeping every artifact in Redis (PEER_ADAPTER=redis)
  (cd "$VAR/peer-node" && QUIET=1 PORT=$PEER_PORT exec taskset -c 0 node server.mjs) >"$VAR/peer.log" 2>&1 &
  PEER=$!
  wait_url "$PEER_BASE/.well-known/openid-configuration" "peer"
  if [ "$PEER_REDIS_PORT" != 0 ]; then
    (cd "$VAR/peer-node" && QUIET=1 PORT=$PEER_REDIS_PORT PEER_ADAPTER=redis PEER_REDIS_URL=${PEER_REDIS_URL:-redis://127.0.0.1:6379/3} exec taskset -c 0 node server.mjs) \
      >"$VAR/peer-redis.log" 2>&1 &
    PEER_REDIS=$!
    wait_url "http://127.0.0.1:$PEER_REDIS_PORT/.well-known/openid-configuration" "peer on Redis"
  fi
}

ours_args() { echo --base "$BASE" --flavour our-iam --client-id "$CLIENT_ID" --client-secret "$SECRET" --password "$COOKIE"; }

check_ours() {  # flows.py check; our one known difference (PKCE optional for confidential clients) is reported, not fatal
  local out=$VAR/check-$1.txt
  # shellcheck disable=SC2046
  "$DRV" bench/iam_flavour.py check $(ours_args) | tee "$out" || true
  if grep '\[FAIL\]' "$out" | grep -v 'without code_challenge' | grep -q .; then
    echo "check failed for $1, see $out" >&2; exit 1
  fi
  grep -q 'code flow (offline_access' "$out" || { echo "check did not run for $1" >&2; exit 1; }
}

meta() {  # $1 file, $2 label: one JSON line saying what was measured (the peer's report.py skips it)
  "$DRV" - "$1" "$2" <<'PY'
import json, os, subprocess, sys, time
def git(*a):
    return subprocess.run(["git", *a], capture_output=True, text=True).stdout.strip()
dirty = [l[3:] for l in git("status", "--porcelain", "--", "iam", "pyproject.toml").splitlines()]
line = {"meta": {"label": sys.argv[2], "ts": time.strftime("%Y-%m-%dT%H:%M:%S"),
                 "commit": git("rev-parse", "--short", "HEAD"), "uncommitted_server_files": dirty,
                 "database": os.environ["IAM_DATABASE_URL"].split("://")[0]}}
with open(sys.argv[1], "a") as fh:
    fh.write(json.dumps(line) + "\n")
PY
}

memory_mb() {  # $1 pid, $2 VmRSS (now) or VmHWM (the peak since the process started), in MB
  awk -v k="$2:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo null
}

memory_line() {  # $1 JSON file, $2 label, $3 server name, $4 pid, $5 RSS at rest before the load
  echo "{\"rss\": {\"label\": \"$2\", \"server\": \"$3\", \"at_rest_mb\": $5," \
       "\"peak_mb\": $(memory_mb "$4" VmHWM), \"after_mb\": $(memory_mb "$4" VmRSS)}}" >>"$1"
}

load() {  # $1 JSON file, $2 label, then flows.py args; the scenarios one after another, each its -n/-c
  local out=$1 label=$2; shift 2
  local common=(--repeat "$REPEAT" --max-seconds "$MAX_SECONDS" --wait-quiet "$WAIT_QUIET" --json "$out" "$@")
  meta "$out" "$label"
  local rest_ours rest_peer=null rest_peer_redis=null
  rest_ours=$(memory_mb "$SERVER" VmRSS)
  [ -n "$PEER" ] && rest_peer=$(memory_mb "$PEER" VmRSS)
  [ -n "$PEER_REDIS" ] && rest_peer_redis=$(memory_mb "$PEER_REDIS" VmRSS)
  local sc n c before after
  for sc in flow client_credentials userinfo; do
    if [ "$sc" = flow ]; then n=$N_FLOW c=$C_FLOW; else n=$N_REQ c=$C_REQ; fi
    before=$("$DRV" bench/cpu.py sample "$SERVER" iam_bench)
    "$DRV" bench/iam_flavour.py "$sc" -n "$n" -c "$c" "${common[@]}" || echo "!! $sc had errors"
    after=$("$DRV" bench/cpu.py sample "$SERVER" iam_bench)
    case $IAM_DATABASE_URL in
      postgresql*) "$DRV" bench/cpu.py ratio "$before" "$after" "$label" "$sc" >>"$out" ;;
    esac
  done
  # resident memory of one worker: at rest (started, checked), its peak under the load, after it
  memory_line "$out" "$label" iam "$SERVER" "$rest_ours"
  [ -n "$PEER" ] && memory_line "$out" "$label" peer-node "$PEER" "$rest_peer"
  [ -n "$PEER_REDIS" ] && memory_line "$out" "$label" peer-node-redis "$PEER_REDIS" "$rest_peer_redis"
  return 0
}

server_log_summary() {  # what broke: 5xx, 429, tracebacks, database locks
  local log=$1
  echo "-- server log $log: status counts: $(grep -oE '" [0-9]{3} ' "$log" | sort | uniq -c | tr -s ' ' | tr '\n' ',')" \
       "$(grep -c 'Traceback' "$log" || true) tracebacks," \
       "$(grep -ci 'database is locked\|deadlock\|could not serialize\|QueuePool limit' "$log" || true) lock/pool errors"
  grep -E 'ERROR|WARNING|Exception' "$log" | sed -E 's/^[0-9-]+ [0-9:,]+ //; s/\[[0-9a-f-]+\]//' \
    | sort | uniq -c | sort -rn | head -5 || true
}

ours() {  # pairs of (db, workers)
  local pairs=("$@")
  [ ${#pairs[@]} -gt 0 ] || pairs=(sqlite 1 sqlite 2 postgres 1 postgres 2)
  while [ ${#pairs[@]} -ge 2 ]; do
    local db=${pairs[0]} w=${pairs[1]}; pairs=("${pairs[@]:2}")
    local label=iam-$db-w$w
    echo "== $label  ($BASE)"
    prepare_db "$db"
    start_server "$w" "$VAR/$label.log"
    check_ours "$label"
    rm -f "$RES/$label.jsonl"
    local pin=(); [ "$w" = 1 ] && pin=(--driver-cpus 1)
    # shellcheck disable=SC2046
    load "$RES/$label.jsonl" "$label" $(ours_args) --label "$label" "${pin[@]}"
    stop_server
    server_log_summary "$VAR/$label.log"
  done
}

compare() {  # $1 db (default sqlite): peer and ours, both pinned to CPU 0, driver on CPU 1
  local db=${1:-sqlite}; local label=compare-$db-w1
  echo "== $label: peer ($PEER_BASE) and ours ($BASE), one invocation"
  prepare_db "$db"
  start_server 1 "$VAR/$label.log"
  start_peer
  check_ours "$label"
  "$DRV" bench/iam_flavour.py check --base "$PEER_BASE" >"$VAR/check-peer.txt" || { cat "$VAR/check-peer.txt"; exit 1; }
  rm -f "$RES/$label.jsonl"
  local peer_redis=()
  [ -n "$PEER_REDIS" ] && peer_redis=(--base "http://127.0.0.1:$PEER_REDIS_PORT" --flavour node-oidc-provider
    --client-id bench-client --client-secret bench-secret-0123456789abcdef0123456789abcdef
    --password bench-password --label peer-node-redis)
  # shellcheck disable=SC2046
  load "$RES/$label.jsonl" "$label" --driver-cpus 1 \
    --base "$PEER_BASE" --flavour node-oidc-provider --client-id bench-client \
    --client-secret bench-secret-0123456789abcdef0123456789abcdef --password bench-password --label peer-node \
    "${peer_redis[@]}" \
    $(ours_args) --label "iam-$db-w1" \
    --base "$BASE" --flavour our-iam --client-id "$ES_CLIENT_ID" --client-secret "$ES_SECRET" \
    --password "$ES_COOKIE" --label "iam-$db-w1-es256"
  stop_peer
  stop_server
  server_log_summary "$VAR/$label.log"
}

profile() {  # $1 db: py-spy (collapsed stacks, 20 s) on one pinned worker under the flow load
  local db=${1:-sqlite}; local label=profile-$db-w1
  echo "== $label"
  prepare_db "$db"
  start_server 1 "$VAR/$label.log"
  # shellcheck disable=SC2046
  "$DRV" bench/iam_flavour.py flow -n 100000 -c "$C_FLOW" --repeat 1 --warmup 0 --max-seconds 30 \
    --wait-quiet 0 --driver-cpus 1 $(ours_args) >"$VAR/$label-load.txt" &
  local driver=$!
  sleep 3
  "$ROOT/bench/.venv/bin/py-spy" record --pid "$SERVER" --duration 20 --rate 250 --nonblocking ${PYSPY_GIL:+--gil} \
    --format raw -o "$VAR/$label.txt" >/dev/null 2>&1 || echo "py-spy failed (is ptrace allowed?)"
  wait "$driver" || true
  stop_server
  # the load line and the summary, kept in results/ (the raw stacks stay in bench/var/)
  { grep -A4 '^flow:' "$VAR/$label-load.txt"; "$DRV" bench/profile_summary.py "$VAR/$label.txt"; } \
    | tee "$RES/$label-c$C_FLOW.txt"
}

cost() {  # per-endpoint server CPU at concurrency 1 (bench/endpoint_cost.py), sqlite and postgres,
          # each with our logging (access + audit lines) and without (uvicorn run directly, quiet)
  local db
  for db in "${@:-sqlite postgres}"; do
    for variant in logs nologs; do
      echo "== cost $db $variant"
      prepare_db "$db"
      if [ $variant = logs ]; then
        start_server 1 "$VAR/cost-$db-$variant.log"
      else
        taskset -c 0 "$ROOT/.venv/bin/uvicorn" --factory iam.app:create_app_from_environment --port "$PORT" \
          --log-level warning --no-access-log >"$VAR/cost-$db-$variant.log" 2>&1 &
        SERVER=$!
        wait_url "$BASE/readyz" "iam"
      fi
      taskset -c 1 "$DRV" bench/endpoint_cost.py --base "$BASE" --pid "$SERVER" --client-id "$CLIENT_ID" \
        --client-secret "$SECRET" --cookie "$COOKIE" -n "${N_COST:-300}" \
        --json "$RES/endpoint-cost.jsonl" --label "iam-$db-w1-$variant" \
        ${PROFILE:+--profile-dir "$VAR/prof-$db-$variant"}
      if [ -n "${PROFILE:-}" ]; then
        for f in "$VAR/prof-$db-$variant"/*.txt; do "$DRV" bench/profile_summary.py "$f" --top 12; done
      fi
      stop_server
    done
  done
}

report() { "$DRV" bench/report.py "$RES"/*.jsonl; }

scale() {  # the same service calls with 1,000 and 1,000,000 people (PostgreSQL at PG_URL)
  PG_URL=$PG_URL "$IAM_PY" bench/scale.py --json "$RES/scale-postgres.jsonl" "$@"
}

cmd=${1:-all}; [ $# -gt 0 ] && shift
case $cmd in
  setup) setup ;;
  ours) setup; ours "$@" ;;
  compare) setup; compare "$@" ;;
  profile) setup; profile "$@" ;;
  cost) setup; cost "$@" ;;
  report) report ;;
  scale) scale "$@" ;;
  all) setup; ours; compare sqlite; report ;;
  *) sed -n 2,21p "$0"; exit 2 ;;
esac
