# shellcheck shell=bash
# Sourced. A second test lane on Python 3.12 or newer (Django 6.x needs it),
# beside the main lane on the default python3.
#
#   find_python312                       prints the path of a Python >= 3.12
#   python_lane VENV EXTRAS PYTEST_ARGS  makes VENV with that Python (reused
#                                        if it exists), installs '.[EXTRAS]'
#                                        and runs pytest PYTEST_ARGS
#
# PYTHON_LANE=/path/to/python picks the interpreter. Otherwise the first that
# runs and is >= 3.12 of: python3.19 ... python3.12 on PATH (pyenv shims for
# versions that are not active fail to run, and are passed over), then
# ~/.pyenv/versions/3.1[2-9]*/bin/python3.* (newest first).
#
# Called from `check` (in an `if`), where `set -e` does not apply: every
# failure is handled explicitly.

[[ -n "${_CI_PYTHON_LANE_SH:-}" ]] && return 0
_CI_PYTHON_LANE_SH=1

_is_python312() {
    [[ -x "$1" ]] && "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null
}

find_python312() {
    local c minor
    if [[ -n "${PYTHON_LANE:-}" ]]; then
        if _is_python312 "$PYTHON_LANE"; then
            printf '%s\n' "$PYTHON_LANE"
            return 0
        fi
        echo "!! PYTHON_LANE=$PYTHON_LANE is not a working Python >= 3.12" >&2
        return 1
    fi
    for ((minor = 19; minor >= 12; minor--)); do
        c="$(command -v "python3.$minor")" && _is_python312 "$c" && {
            printf '%s\n' "$c"
            return 0
        }
    done
    while IFS= read -r c; do
        [[ "$c" =~ /python3\.[0-9]+$ ]] && _is_python312 "$c" && {
            printf '%s\n' "$c"
            return 0
        }
    done < <(compgen -G "$HOME/.pyenv/versions/3.1[2-9]*/bin/python3.*" | sort -V -r)
    echo "!! no Python >= 3.12 found (PATH python3.12..python3.19," \
        "$HOME/.pyenv/versions/3.1[2-9]*; or set PYTHON_LANE)" >&2
    return 1
}

python_lane() {
    if (($# < 2)); then
        echo "usage: python_lane VENV EXTRAS [PYTEST_ARGS...]" >&2
        return 2
    fi
    local venv="$1" extras="$2" python
    shift 2
    python="$(find_python312)" || return 1
    echo "Python lane: $("$python" --version) ($python), venv $venv, extras [$extras]"
    if [[ ! -x "$venv/bin/python" ]]; then
        "$python" -m venv "$venv" || return 1
    fi
    "$venv/bin/python" -m pip install --quiet --upgrade pip || return 1
    "$venv/bin/python" -m pip install --quiet -e ".[$extras]" || return 1
    "$venv/bin/python" -m pytest "$@"
}
