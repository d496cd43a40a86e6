"""What Herald knows about `ray up` clusters without importing Ray: rendering the on-prem definition for a given
set of hosts, and telling an operator why joining a cluster failed (docs/architecture.md "Ray deployment")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from herald.errors import ConfigError

ONPREM_YAML = "cluster-onprem.yaml"
DEFAULT_TOKEN_PATH = Path("~/.ray/auth_token")


@dataclass(frozen=True)
class OnPremHosts:
    """The machines of an on-prem cluster and the account `ray up` logs into on each of them."""

    head_ip: str
    worker_ips: tuple[str, ...]
    ssh_user: str
    ssh_private_key: Path


def render_onprem(
    template: str,
    hosts: OnPremHosts,
    *,
    cluster_name: str,
    project_dir: Path,
    sources: Mapping[str, Path] | None = None,
) -> str:
    """cluster-onprem.yaml for these hosts: provider, auth and name replaced, relative file_mounts sources made
    absolute under `project_dir` (so `ray up` may run from anywhere), and `sources` replacing the local side of
    the named remote paths. Commands are left exactly as written."""
    try:
        config = yaml.safe_load(template)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cluster definition is not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError("cluster definition must be a YAML mapping")
    provider = config.get("provider")
    if not isinstance(provider, dict) or provider.get("type") != "local":
        raise ConfigError("only a `local` provider cluster definition can be rendered for a list of hosts")
    if not hosts.head_ip:
        raise ConfigError("an on-prem cluster needs a head_ip")
    provider["head_ip"] = hosts.head_ip
    provider["worker_ips"] = list(hosts.worker_ips)
    config["cluster_name"] = cluster_name
    config["auth"] = {"ssh_user": hosts.ssh_user, "ssh_private_key": str(hosts.ssh_private_key)}
    mounts: dict[str, Any] = config.get("file_mounts") or {}
    unknown = set(sources or {}) - set(mounts)
    if unknown:
        raise ConfigError(f"file_mounts has no remote path {sorted(unknown)[0]!r} to take a source for")
    rendered: dict[str, str] = {}
    for remote, local in mounts.items():
        source = Path(str(local))
        if sources and remote in sources:
            source = sources[remote]
        elif not str(local).startswith("~") and not source.is_absolute():
            source = (project_dir / source).resolve()
        rendered[remote] = str(source)
    config["file_mounts"] = rendered
    return yaml.safe_dump(config, sort_keys=False)


def join_failure_hint(address: str, error: str, env: Mapping[str, str] | None = None) -> str:
    """The message of a failed join: the error, and what to check given the environment the driver had."""
    env = os.environ if env is None else env
    hints: list[str] = []
    token_named = any(env.get(k) for k in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"))
    token_file = Path(env.get("HOME", "~")).expanduser() / ".ray" / "auth_token"
    if "auth" in error.lower() or "token" in error.lower() or env.get("RAY_AUTH_MODE") == "token":
        if env.get("RAY_AUTH_MODE") != "token":
            hints.append("clusters started by `ray up` use token authentication: set RAY_AUTH_MODE=token")
        if not token_named and not token_file.is_file():
            hints.append(f"no Ray token: copy the cluster's token to {token_file} (or set RAY_AUTH_TOKEN_PATH)")
    if address == "auto" and "find" in error.lower():
        hints.append(
            "ray_address=auto joins the cluster `ray start` recorded under RAY_TMPDIR on this node: run it on a"
            " cluster node (`ray exec`), with the node environment (scripts/node-env.sh)"
        )
    hints.append("unset HERALD_RAY_ADDRESS to run on a private local Ray runtime instead")
    return f"could not join the Ray cluster at {address!r}: {error.strip()} ({'; '.join(hints)})"
