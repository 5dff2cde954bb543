#!/usr/bin/env bash
# Set this machine up for `make test` and `make demo`, idempotently and quickly when done:
#   1. Debian packages the farm needs (gearmand, gearadmin, a compiler for sdists) and the
#      tests need (PostgreSQL, wrk, Prometheus, systemd-nspawn and debootstrap for the
#      Ansible hosts)
#   2. the virtualenv .venv with uv, the worker (and client) packages and the test tools
# Downloads are cached under $FARM_CACHE (outside the clone) and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
FARM_CACHE=${FARM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/refstack-farm}
export UV_CACHE_DIR=${UV_CACHE_DIR:-$FARM_CACHE/uv}
PYTHON=${PYTHON:-python3}
UV_VERSION=0.13.9
log() { printf '[bootstrap] %s\n' "$*" >&2; }

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { log "$PYTHON is $("$PYTHON" -V 2>&1); Python 3.11 or newer is needed"; exit 1; }

need=()
command -v gearmand >/dev/null || [[ -x /usr/sbin/gearmand ]] || need+=(gearman-job-server)
command -v gearadmin >/dev/null || need+=(gearman-tools)
command -v gcc >/dev/null || need+=(gcc)
"$PYTHON" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' ||
  need+=(python3-dev)
"$PYTHON" -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)  # tests
command -v mariadbd >/dev/null || need+=(mariadb-server)  # tests: the real RefStack server
command -v wrk >/dev/null || need+=(wrk)  # bench/status_api.py
command -v prometheus >/dev/null || need+=(prometheus)  # tests: the metrics, scraped for real
command -v chromium >/dev/null || need+=(chromium)  # tests: the dashboard, in a real browser
command -v chromedriver >/dev/null || need+=(chromium-driver)
# the deployment tests: real systemd hosts with systemd-nspawn, reached over SSH
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v socat >/dev/null || need+=(socat)
command -v zstd >/dev/null || need+=(zstd)
command -v ssh >/dev/null || need+=(openssh-client)
if ((${#need[@]})); then
  log "installing Debian packages: ${need[*]}"
  sudo=(); [[ $(id -u) == 0 ]] || sudo=(sudo)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv with $("$PYTHON" -V)"
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/uv --version 2>/dev/null | grep -q "^uv $UV_VERSION"; then
  log "installing uv $UV_VERSION into .venv"
  PIP_CONFIG_FILE=/dev/null .venv/bin/python -m pip install -q --disable-pip-version-check \
    --index-url https://pypi.org/simple "uv==$UV_VERSION"
fi
mkdir -p "$UV_CACHE_DIR"
extras=(-e ./worker)
extras+=(-e ./client -e "./server[postgresql]" -e ./lab)
.venv/bin/uv pip install -q --python .venv/bin/python --index-url https://pypi.org/simple \
  "${extras[@]}" -r requirements-dev.txt
