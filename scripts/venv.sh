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

# One Debian package a test needs, installed with apt-get when its command is missing and we
# may (root with apt-get); otherwise (or if apt-get fails) say what the tests will do without.
# ensure_apt_tool TOOL PACKAGE WHY IF_NOT [APT_OPTIONS...]: TOOL is a command name or path
# (also looked for in /usr/sbin, which is not on every user's PATH).
ensure_apt_tool() {
    local tool=$1 package=$2 why=$3 if_not=$4
    shift 4
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing $package with apt-get ($why)"
        apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" "$package" >/dev/null \
            || echo "scripts: apt-get install $package failed; $if_not" >&2
    else
        echo "scripts: no $tool; install Debian's $package package: $if_not" >&2
    fi
}

# The browser tests of the web console (tests/e2e/browser) drive Debian's chromium through
# Playwright; Playwright's own browser download is never used.
CHROMIUM=${DEPLOYX_CHROMIUM:-/usr/bin/chromium}
ensure_chromium() {
    ensure_apt_tool "$CHROMIUM" chromium "for the console's browser tests" \
        "the browser tests will skip"
}

# tests/e2e/test_pgbouncer.py runs the services behind Debian's pgbouncer (transaction mode).
ensure_pgbouncer() {
    ensure_apt_tool pgbouncer pgbouncer "for the connection pooler test" \
        "the pooler test will fail"
}

# tests/deploy/test_kubernetes.py renders the Kubernetes manifests with Debian's kubectl
# (`kubectl kustomize`, offline: no cluster is needed).
ensure_kubectl() {
    ensure_apt_tool kubectl kubectl "to render the Kubernetes manifests" \
        "the manifest tests will fail"
}

# tests/deploy/test_monitoring.py checks and unit-tests the alert rules with promtool, which
# Debian ships in its prometheus package (no Prometheus server is started).
ensure_promtool() {
    ensure_apt_tool promtool prometheus "for promtool, to test the alert rules" \
        "the alert rule tests will fail" --no-install-recommends
}
