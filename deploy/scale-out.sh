#!/usr/bin/env bash
# Run the demo site on PostgreSQL + Redis with N ASGI workers behind a round-robin proxy,
# a demo agent, and M mlexec job workers. Stop everything with Ctrl-C.
#
#   DATABASE_URL=postgres://$USER@127.0.0.1:5432/demo REDIS_URL=redis://127.0.0.1:6379/0 \
#     deploy/scale-out.sh 3 2
set -euo pipefail
cd "$(dirname "$0")/.."
workers=${1:-3}
job_workers=${2:-1}
base_port=${BASE_PORT:-8001}
PY=${PY:-.venv/bin/python}
: "${DATABASE_URL:?set DATABASE_URL to a postgres:// URL}"
: "${REDIS_URL:?set REDIS_URL to a redis:// URL}"
export DATABASE_URL REDIS_URL
# The settings refuse to start without a key (DEBUG is off): every process of this run shares
# one made for it, unless you pass your own.
SECRET_KEY=${SECRET_KEY:-$($PY -c 'import secrets; print(secrets.token_urlsafe(50))')}
export SECRET_KEY

pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
$PY manage.py migrate --no-input
$PY manage.py demo_setup
backends=()
for i in $(seq 0 $((workers - 1))); do
  port=$((base_port + i))
  $PY -m daphne -b 127.0.0.1 -p "$port" config.asgi:application & pids+=($!)
  backends+=("127.0.0.1:$port")
done
for _ in $(seq "$job_workers"); do
  $PY manage.py db_worker & pids+=($!)
done
$PY deploy/tcp_proxy.py --listen 127.0.0.1:8000 "${backends[@]}" & pids+=($!)
sleep 2
$PY manage.py demo_agent --url http://127.0.0.1:8000 & pids+=($!)
echo "Serving http://127.0.0.1:8000 through ${workers} workers: ${backends[*]}"
wait
