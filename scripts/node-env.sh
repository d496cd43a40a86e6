# shellcheck shell=bash
# The environment of a Herald Ray node. scripts/node-setup makes ~/.bashrc source this file, and `ray up`,
# `ray exec` and `ray down` run every command in such a shell (docs/architecture.md "Ray deployment").
HERALD_HOME="${HERALD_HOME:-$HOME/herald}"
export PATH="$HERALD_HOME/.venv/bin:$PATH"
# The checkout under ~/herald is the code that runs (driver and Ray workers), also when the venv's packages
# come from another venv (HERALD_NODE_VENV, see scripts/node-setup).
case ":${PYTHONPATH:-}:" in
  *":$HERALD_HOME:"*) ;;
  *) export PYTHONPATH="$HERALD_HOME${PYTHONPATH:+:$PYTHONPATH}" ;;
esac
# Ray 2.60 token authentication: every node, the driver and the CLI present ~/.ray/auth_token (file_mounts
# copies the operator's token there).
export RAY_AUTH_MODE=token
# Ray's session files, its address file (what `ray.init(address="auto")` reads) and the on-prem provider's
# state stay in this account's home, apart from any other Ray runtime on the same host.
export RAY_TMPDIR="${RAY_TMPDIR:-$HOME/.herald-ray}"
export HERALD_RAY_PORT="${HERALD_RAY_PORT:-6379}"
# `herald run` on a node joins the node's cluster instead of starting a private Ray runtime.
export HERALD_RAY_ADDRESS="${HERALD_RAY_ADDRESS:-auto}"
if [ -z "${HERALD_CONFIG:-}" ] && [ -f "$HOME/herald.toml" ]; then
  export HERALD_CONFIG="$HOME/herald.toml"
fi
