# Shared by scripts/demo and scripts/test: logging, apt, and the project's virtual environment.
# Sourced, not run. Everything here is idempotent: a second run does nothing it already did.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

APT_UPDATED=0
apt_install() {
  # Installs Debian packages; needs root (the README's machines run as root).
  [ "$(id -u)" = 0 ] || die "need root to install: $* (install them, or run as root)"
  command -v apt-get >/dev/null || die "no apt-get: install $* by hand"
  if [ "$APT_UPDATED" = 0 ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    APT_UPDATED=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

find_python() {
  # Python 3.11 is fixed for this project.
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  die "Python 3.11 not found (set PYTHON=/path/to/python3.11)"
}

ensure_venv() {
  # Creates .venv and installs the project with its dev extras and the replay's (the demo's city and
  # loadtests/ need httpx, tqdm, matplotlib; they are not server dependencies); reinstalls when
  # pyproject.toml changes.
  local py stamp
  py="$(find_python)"
  if ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3-venv
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$py" -m venv "$VENV"
  fi
  stamp="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    say "installing tot-dispatch and its dependencies into .venv"
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -e "$ROOT[dev,replay]" >&2
    rm -f "$VENV"/.installed-*
    touch "$stamp"
  fi
  ensure_console_assets
}

# --- the dispatcher console (docs/console.md) ---------------------------------------------------------

ensure_console_assets() {
  # The console's map library (Leaflet), pinned and hash-checked, from the npm registry; no Node.js needed.
  "$VENV/bin/python" -m server.console_assets --check >/dev/null 2>&1 ||
    "$VENV/bin/python" -m server.console_assets >&2 ||
    say "warning: the console's map library is not installed (needs the npm registry once): /console answers 503"
}

ensure_browser() {
  # Debian's Chromium for the console's browser tests (tests/e2e/test_console.py), driven by Playwright.
  if [ -n "${TOT_TEST_CHROMIUM:-}" ] || command -v chromium >/dev/null; then return 0; fi
  apt_install chromium
}

ensure_nginx() {
  # Debian's nginx for the proxy test (tests/e2e/test_nginx.py): it runs its own nginx on a free port with
  # a generated configuration, never the system's service. nginx-light has the proxy and upstream
  # modules the configuration needs (deploy/nginx/nginx.conf).
  if [ -n "${TOT_TEST_NGINX:-}" ] || command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then return 0; fi
  apt_install nginx-light
}
