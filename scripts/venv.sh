# Sourced by scripts/up and scripts/test: makes .venv from a bare machine with Python 3.11+
# and installs the project into it, editable, with the extras its caller names (e.g. "[server]").
PYTHON=${PYTHON:-python3}
VENV=.venv
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

section() { printf '\n=== %s ===\n' "$*"; }
die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

ensure_venv() {
    local extras=${1:-}
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found: Python 3.11+ is needed"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$("$PYTHON" -V 2>&1) is too old: Python 3.11+ is needed"
    # A venv made without ensurepip has a python but no pip: make it again.
    if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        rm -rf "$VENV"
        if ! "$PYTHON" -m venv "$VENV"; then
            # Debian ships venv (ensurepip) separately.
            [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
                || die "'$PYTHON -m venv' failed: install python3-venv"
            rm -rf "$VENV"
            echo "installing python3-venv with apt-get"
            apt-get update -qq \
                && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv \
                || die "apt-get install python3-venv failed"
            "$PYTHON" -m venv "$VENV" || die "'$PYTHON -m venv' failed even with python3-venv"
        fi
    fi
    # Reinstall only when pyproject.toml (or the extras asked for) changed since the last install.
    local stamp="$VENV/.deployx-installed" want
    want="$(cksum pyproject.toml) $extras"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        "$VENV/bin/python" -m pip install -q -e ".$extras" || die "pip install -e '.$extras' failed"
        printf '%s\n' "$want" >"$stamp"
    fi
}

# The browser tests of the web console (tests/e2e/browser) drive Debian's chromium through
# Playwright; Playwright's own browser download is never used. Installed when missing and we
# may (root with apt-get); otherwise those tests skip, saying why.
CHROMIUM=${DEPLOYX_CHROMIUM:-/usr/bin/chromium}
ensure_chromium() {
    [ -x "$CHROMIUM" ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing chromium with apt-get (for the console's browser tests)"
        apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
            || echo "scripts: apt-get install chromium failed; the browser tests will skip" >&2
    else
        echo "scripts: no $CHROMIUM; install Debian's chromium to run the browser tests" >&2
    fi
}

# tests/e2e/test_pgbouncer.py runs the services behind Debian's pgbouncer (transaction mode).
ensure_pgbouncer() {
    command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing pgbouncer with apt-get (for the connection pooler test)"
        apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null \
            || echo "scripts: apt-get install pgbouncer failed; the pooler test will fail" >&2
    else
        echo "scripts: no pgbouncer; install Debian's pgbouncer for the pooler test" >&2
    fi
}

# tests/deploy/test_kubernetes.py renders the Kubernetes manifests with Debian's kubectl
# (`kubectl kustomize`, offline: no cluster is needed).
ensure_kubectl() {
    command -v kubectl >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing kubectl with apt-get (to render the Kubernetes manifests)"
        apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl >/dev/null \
            || echo "scripts: apt-get install kubectl failed; the manifest tests will fail" >&2
    else
        echo "scripts: no kubectl; install Debian's kubectl for the manifest tests" >&2
    fi
}

# tests/deploy/test_monitoring.py checks and unit-tests the alert rules with promtool, which
# Debian ships in its prometheus package (no Prometheus server is started).
ensure_promtool() {
    command -v promtool >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing prometheus with apt-get (for promtool, to test the alert rules)"
        apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                prometheus >/dev/null \
            || echo "scripts: apt-get install prometheus failed; the alert rule tests will fail" >&2
    else
        echo "scripts: no promtool; install Debian's prometheus package for the alert rule tests" >&2
    fi
}
