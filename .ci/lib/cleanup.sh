# shellcheck shell=bash
# Sourced. One EXIT trap for the whole run: `on_exit CMD ARGS...` registers a
# command, and every registered command runs (last registered first) when the
# shell exits for any reason: success, a failed step, `exit`, Ctrl-C or TERM.
# A failing cleanup command is reported and does not stop the others.

[[ -n "${_CI_CLEANUP_SH:-}" ]] && return 0
_CI_CLEANUP_SH=1

_ci_exit_cmds=()

on_exit() {
    _ci_exit_cmds+=("$(printf '%q ' "$@")")
}

_ci_run_exit_cmds() {
    local status=$? i
    for ((i = ${#_ci_exit_cmds[@]} - 1; i >= 0; i--)); do
        eval "${_ci_exit_cmds[i]}" || printf '!! cleanup failed: %s\n' "${_ci_exit_cmds[i]}" >&2
    done
    _ci_exit_cmds=()
    return "$status"
}

trap _ci_run_exit_cmds EXIT
# A signal must end the shell through `exit`, so that the EXIT trap runs. Bash
# runs it once the foreground command (say pytest) has returned.
trap 'exit 130' INT
trap 'exit 143' TERM
