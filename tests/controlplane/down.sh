#!/usr/bin/env bash
# Stops what up.sh started in DIR (newest first) and removes DIR; --keep leaves DIR (its logs).
set -uo pipefail
dir=${1:?usage: down.sh DIR [--keep]}
[ -f "$dir/pids" ] || exit 0
pids=$(tac "$dir/pids" | awk '{print $1}')
for pid in $pids; do kill "$pid" 2>/dev/null; done
for _ in $(seq 100); do
  alive=""
  for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ -n "$alive" ] || break
  sleep 0.1
done
for pid in $pids; do kill -9 "$pid" 2>/dev/null; done
: >"$dir/pids"
[ "${2:-}" = "--keep" ] || rm -rf "$dir"
