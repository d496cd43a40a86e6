"""What Herald knows about `ray up` clusters without importing Ray: rendering the on-prem definition for a given
set of hosts, and telling an operator why joining a cluster failed (docs/architecture.md "Ray deployment")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from herald.errors import ClusterJoinError, ConfigError

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
    return str(yaml.safe_dump(config, sort_keys=False))


def resolve_ray_address(address: str, env: Mapping[str, str] | None = None) -> str:
    """`auto` becomes the address `ray start` recorded on this node: Ray's address file under RAY_TMPDIR (else
    TMPDIR, else /tmp), as Ray reads it. Ray's own `auto` falls back to joining any Ray instance it finds running
    on the machine, which on a shared host may be someone else's; that fallback is never taken."""
    if address != "auto":
        return address
    env = os.environ if env is None else env
    # The same lookup as Ray's get_default_system_temp_dir on Linux, /tmp included.
    temp = env.get("RAY_TMPDIR") or env.get("TMPDIR") or "/tmp"  # noqa: S108
    path = Path(temp) / "ray" / "ray_current_cluster"
    try:
        recorded = path.read_text().strip()
    except OSError:
        recorded = ""
    if not recorded:
        raise ClusterJoinError(
            f"ray_address=auto: no Ray cluster was started on this node ({path} is missing or empty); run `herald"
            " run` on a node of the cluster (`ray exec`, whose shell sets RAY_TMPDIR, scripts/node-env.sh), or set"
            " HERALD_RAY_ADDRESS to the cluster's host:port"
        )
    return recorded


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
    if "timed out" in error.lower() or "connect" in error.lower():
        hints.append(f"check that the cluster at {address} is up: `ray exec <cluster yaml> 'ray status'`")
    hints.append("unset HERALD_RAY_ADDRESS to run on a private local Ray runtime instead")
    return f"could not join the Ray cluster at {address!r}: {error.strip()} ({'; '.join(hints)})"
