#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what it needs, then runs every check.
#   bash tests/run.sh
# Needs: Debian/Ubuntu with apt (root or sudo) and a Rust toolchain; ../shared beside the repo
# for the kube-validate checks (SHARED_DIR overrides). Set BLOCKSIGHT_E2E_KUBECONFIG to also run
# the end-to-end tests against a kind/k3d cluster instead of the local control plane.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export SHARED_DIR="${SHARED_DIR:-$REPO/../shared}"

step() { printf '\n=== %s\n' "$*"; }

step "system packages"
need_apt=()
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v amtool >/dev/null || need_apt+=(prometheus-alertmanager)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
promtool --version 2>&1 | head -1
amtool --version 2>&1 | head -1

step "python tools (.venv)"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
export PATH="$REPO/.venv/bin:$PATH"

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo build"
cargo build --locked
export BLOCKSIGHT_BIN="$REPO/target/debug/blocksight"

step "crds/ in sync with the code"
tmp=$(mktemp -d)
"$BLOCKSIGHT_BIN" crd --dir "$tmp"
diff -r "$tmp" crds/
diff -r crds/ charts/blocksight-operator/crds/
rm -rf "$tmp"

# --- BEGIN probe test services (tests/services) ---------------------------------------------
# Throwaway PostgreSQL and Redis on 127.0.0.1, free ports, password auth, stopped on exit.
# Skipped when BLOCKSIGHT_TEST_POSTGRES_URL and BLOCKSIGHT_TEST_REDIS_URL are already set
# (e.g. CI service containers). PostgreSQL refuses to run as root, so as root it runs as the
# `postgres` user the Debian package creates.
step "PostgreSQL and Redis for the probe tests"
if [ -z "${BLOCKSIGHT_TEST_POSTGRES_URL:-}" ] || [ -z "${BLOCKSIGHT_TEST_REDIS_URL:-}" ]; then
  need_apt=()
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_apt+=(postgresql)
  command -v redis-server >/dev/null || need_apt+=(redis-server)
  if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  fi
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
  services_dir=$(mktemp -d)
  as_pg=()
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$services_dir"
    as_pg=(runuser -u postgres --)
  fi
  pg_port=$(free_port)
  pg_password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  redis_port=$(free_port)
  redis_password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  stop_test_services() {
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$services_dir/pgdata" -m immediate stop >/dev/null 2>&1 || true
    local redis_pid
    redis_pid=$(cat "$services_dir/redis.pid" 2>/dev/null || true)
    if [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null; then
      # Redis logs its shutdown; remove the folder only once it is gone.
      for _ in $(seq 50); do kill -0 "$redis_pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$services_dir" || true
  }
  trap stop_test_services EXIT
  "${as_pg[@]}" sh -c "umask 077; printf '%s\n' '$pg_password' > '$services_dir/pgpass'"
  "${as_pg[@]}" "$pg_bin/initdb" -D "$services_dir/pgdata" -U postgres --pwfile="$services_dir/pgpass" \
    --auth=scram-sha-256 --no-locale -E UTF8 --no-sync >/dev/null
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$services_dir/pgdata" -l "$services_dir/postgres.log" -w start \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $services_dir -c fsync=off" >/dev/null
  redis-server --bind 127.0.0.1 --port "$redis_port" --requirepass "$redis_password" --save '' \
    --appendonly no --daemonize yes --dir "$services_dir" --pidfile "$services_dir/redis.pid" \
    --logfile "$services_dir/redis.log"
  for _ in $(seq 50); do
    redis-cli -p "$redis_port" --no-auth-warning -a "$redis_password" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
  done
  export BLOCKSIGHT_TEST_POSTGRES_URL="postgres://postgres:$pg_password@127.0.0.1:$pg_port/postgres"
  export BLOCKSIGHT_TEST_REDIS_URL="redis://:$redis_password@127.0.0.1:$redis_port/0"
  echo "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port, Redis on 127.0.0.1:$redis_port"
else
  echo "using the servers in BLOCKSIGHT_TEST_POSTGRES_URL and BLOCKSIGHT_TEST_REDIS_URL"
fi
# --- END probe test services --------------------------------------------------------------

# --- BEGIN backup test S3 (tests/services/backup_programs.rs) -------------------------------
# moto's S3 server on 127.0.0.1 (free port): the S3 destination of the backup program tests
# (tests/requirements.txt pins it). Stopped on exit after the services above. Skipped when
# BLOCKSIGHT_TEST_S3_ENDPOINT is already set (e.g. a CI service container).
step "S3 (moto) for the backup tests"
if [ -z "${BLOCKSIGHT_TEST_S3_ENDPOINT:-}" ]; then
  [ -x .venv/bin/moto_server ] || .venv/bin/pip install -q --disable-pip-version-check \
    "$(grep -E '^moto\[server\]==' tests/requirements.txt)"
  s3_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  s3_log=$(mktemp)
  .venv/bin/moto_server -H 127.0.0.1 -p "$s3_port" >"$s3_log" 2>&1 &
  s3_pid=$!
  stop_test_s3() {
    kill "$s3_pid" 2>/dev/null || true
    wait "$s3_pid" 2>/dev/null || true
    rm -f "$s3_log"
  }
  # Extend the EXIT trap (the probe services' stop, if set) rather than replace it.
  previous_exit_trap=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")
  # shellcheck disable=SC2064 # expanded now on purpose: the new trap chains the one before
  trap "${previous_exit_trap:+$previous_exit_trap; }stop_test_s3" EXIT
  s3_ready=""
  for _ in $(seq 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $s3_port), 0.5)" 2>/dev/null; then
      s3_ready=1; break
    fi
    kill -0 "$s3_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$s3_ready" ]; then
    cat "$s3_log" >&2
    echo "moto_server did not start on 127.0.0.1:$s3_port" >&2
    exit 1
  fi
  export BLOCKSIGHT_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
  echo "moto S3 on $BLOCKSIGHT_TEST_S3_ENDPOINT"
else
  echo "using the S3 endpoint in BLOCKSIGHT_TEST_S3_ENDPOINT"
fi
# --- END backup test S3 ---------------------------------------------------------------------

# --- BEGIN Kubernetes control plane (tests/controlplane, tests/e2e) ------------------------
# The e2e tests run against a real API server: a kind/k3d cluster when
# BLOCKSIGHT_E2E_KUBECONFIG names one, else the local control plane built from the pins in
# tests/controlplane/go.mod (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kwok; built once per pin into .cache/controlplane) and started on 127.0.0.1. Either way
# the CRDs and the chart's RBAC are installed as a user would, and the operator runs as the
# chart's ServiceAccount. A control plane that does not start fails the run with its logs.
step "Kubernetes control plane and the operator's install"
command -v go >/dev/null || { echo "Go is needed to build the control plane (tests/controlplane)" >&2; exit 1; }
cp_dir=$(mktemp -d)
previous_exit_trap=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")
if [ -n "${BLOCKSIGHT_E2E_KUBECONFIG:-}" ]; then
  echo "using the cluster in BLOCKSIGHT_E2E_KUBECONFIG=$BLOCKSIGHT_E2E_KUBECONFIG"
  # shellcheck disable=SC2064 # expanded now on purpose: the new trap chains the one before
  trap "${previous_exit_trap:+$previous_exit_trap; }rm -rf '$cp_dir'" EXIT
  cp_bin=$(tests/controlplane/build.sh)
  export BLOCKSIGHT_E2E_KUBECTL="${BLOCKSIGHT_E2E_KUBECTL:-$cp_bin/kubectl}"
else
  cp_start=$SECONDS
  # shellcheck disable=SC2064 # expanded now on purpose: the new trap chains the one before
  trap "${previous_exit_trap:+$previous_exit_trap; }tests/controlplane/down.sh '$cp_dir'" EXIT
  tests/controlplane/up.sh "$cp_dir"
  cp_bin=$(tests/controlplane/build.sh)
  export BLOCKSIGHT_E2E_KUBECONFIG="$cp_dir/kubeconfig"
  export BLOCKSIGHT_E2E_AUDIT_LOG="$cp_dir/audit.log"
  export BLOCKSIGHT_E2E_KUBECTL="$cp_bin/kubectl"
  echo "control plane up in $((SECONDS - cp_start)) s: $(cat "$cp_dir/server")"
fi
KUBECTL="$BLOCKSIGHT_E2E_KUBECTL" PYTHON="$REPO/.venv/bin/python" \
  tests/controlplane/install.sh "$BLOCKSIGHT_E2E_KUBECONFIG" "$cp_dir"
export BLOCKSIGHT_E2E_OPERATOR_KUBECONFIG="$cp_dir/operator.kubeconfig"
# --- END Kubernetes control plane ---------------------------------------------------------

# The integration test binaries: tests/offline (pure), tests/controller (the reconcilers
# against a scripted API server), tests/services (the servers started above), tests/e2e (the
# control plane); their fixtures are the tests/testkit crate.
step "cargo test (unit; offline, controller against a mock API server, services, e2e on the control plane)"
CI=true cargo test --locked --all-targets

# --- BEGIN fake API server and benchmark smoke run (tests/fake-apiserver) ------------------
# The dev-only workspace member: lint, its tests (the fake itself, and the real `run` code
# path in-process against it), then the benchmark on the debug build with 10 BlockSights.
# --check fails the step when a request-count target is missed (steady state, creation,
# spec change, restart); times and memory mean something only in release: see
# docs/performance.md for the full run.
step "fake API server: lint, tests, benchmark smoke run (N=10)"
cargo fmt --check -p blocksight-fake-apiserver
cargo clippy --locked -p blocksight-fake-apiserver --all-targets -- -D warnings
CI=true cargo test --locked -p blocksight-fake-apiserver
cargo build --locked -p blocksight-fake-apiserver --bin blocksight-bench
bench_json=$(mktemp)
target/debug/blocksight-bench --operator "$BLOCKSIGHT_BIN" --n 10 --resync-seconds 1 \
  --steady-seconds 5 --converge-timeout-seconds 120 --render-seconds 1 --check \
  --output "$bench_json" >/dev/null
python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["runs"][0]; print("N=10: converged in", r["creation"]["seconds_to_converge"], "s; steady state:", r["steady_state"]["requests"]["writes"], "writes,", r["steady_state"]["requests"]["reads_get_list"], "GET/LIST")' "$bench_json"
rm -f "$bench_json"
# --- END fake API server and benchmark smoke run ------------------------------------------

# The Go test tools (tests/gotools, each pinned in its go.mod; built once per pin into
# .cache/gotools): compose-config, Compose's own validation, for the laptop stack tests
# (tests/assets/test_compose.py), and actionlint for the workflows (tests/assets/test_release.py).
step "Go test tools: compose-config, actionlint"
gotools=$(tests/gotools/build.sh)
export BLOCKSIGHT_COMPOSE_CONFIG="$gotools/compose-config"
export PATH="$gotools:$PATH"
"$gotools/actionlint" -version | head -1

step "asset tests: kube-validate, Helm, Argo CD, Terraform, promtool/amtool, Compose, release linters"
pytest -q tests/assets
