# shellcheck shell=bash
# Sourced. Headless Chromium for the tests (Debian's package, not a browser
# that a test tool downloads: downloads fail on this network).
#
#   browser_setup   installs `chromium` if /usr/bin/chromium is missing,
#                   checks that it renders a page headless, and exports
#                   TASK_QUEUE_TEST_CHROMIUM=/usr/bin/chromium
#
# Launch it as root with CHROMIUM_TEST_FLAGS below plus a fresh
# --user-data-dir. Playwright (PyPI `playwright`, never `playwright install`)
# drives this binary: chromium.launch(executable_path=TASK_QUEUE_TEST_CHROMIUM,
# headless=True, args=[the flags without --headless]) makes its own fresh
# profile (it rejects --user-data-dir there; launch_persistent_context takes
# one). Without the background-networking flags it keeps dialing out and floods
# the closed network with refused connections.
#
# Called from `check` (in an `if`), where `set -e` does not apply: every
# failure is handled explicitly.

[[ -n "${_CI_BROWSER_SH:-}" ]] && return 0
_CI_BROWSER_SH=1
# shellcheck source=SCRIPTDIR/cleanup.sh
source "$(dirname "${BASH_SOURCE[0]}")/cleanup.sh"

CHROMIUM_BIN=/usr/bin/chromium
CHROMIUM_TEST_FLAGS=(
    --headless
    --no-sandbox
    --disable-gpu
    --no-first-run
    --disable-background-networking
    --disable-component-update
    --disable-sync
    --disable-quic
    # No name lookups but loopback: even with the flags above Chromium 156
    # still resolves accounts.google.com and update.googleapis.com.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost"
)

_browser_install() {
    echo "$CHROMIUM_BIN not found: installing Debian's chromium"
    local t0=$SECONDS
    if ! { apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            chromium >/dev/null; }; then
        echo "!! apt-get install chromium failed" >&2
        return 1
    fi
    echo "installed chromium in $((SECONDS - t0)) s"
}

browser_setup() {
    if [[ ! -x "$CHROMIUM_BIN" ]]; then
        _browser_install || return 1
        if [[ ! -x "$CHROMIUM_BIN" ]]; then
            echo "!! $CHROMIUM_BIN still missing after installing chromium" >&2
            return 1
        fi
    fi

    # Smoke test: render a page headless, as the tests will launch it.
    local dir out
    dir="$(mktemp -d "${TMPDIR:-/tmp}/task-queue-chromium.XXXXXX")" || return 1
    on_exit rm -rf "$dir"
    printf '<!doctype html><title>t</title><p id="x">chromium-ok</p>\n' >"$dir/page.html"
    if ! out="$(timeout 60 "$CHROMIUM_BIN" "${CHROMIUM_TEST_FLAGS[@]}" \
        --user-data-dir="$dir/profile" --dump-dom "file://$dir/page.html" 2>"$dir/stderr")" ||
        [[ "$out" != *chromium-ok* ]]; then
        echo "!! headless chromium did not render a page; its stderr:" >&2
        cat "$dir/stderr" >&2
        return 1
    fi
    export TASK_QUEUE_TEST_CHROMIUM="$CHROMIUM_BIN"
    echo "$("$CHROMIUM_BIN" --version 2>/dev/null):" \
        "TASK_QUEUE_TEST_CHROMIUM=$TASK_QUEUE_TEST_CHROMIUM"
}
