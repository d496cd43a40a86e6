"""The `ray up` definitions (cluster.yaml for AWS, cluster-onprem.yaml) and their rendering for a set of hosts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from herald.cluster import ONPREM_YAML, OnPremHosts, join_failure_hint, render_onprem, resolve_ray_address
from herald.errors import ClusterJoinError, ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHARED = ("file_mounts", "rsync_exclude", "setup_commands", "head_start_ray_commands", "worker_start_ray_commands")
HOSTS = OnPremHosts("10.1.0.1", ("10.1.0.2", "10.1.0.3"), "herald", Path("/keys/id_ed25519"))


def load(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_aws_and_onprem_install_and_start_nodes_the_same_way() -> None:
    aws, onprem = load("cluster.yaml"), load(ONPREM_YAML)
    assert {key: aws[key] for key in SHARED} == {key: onprem[key] for key in SHARED}


def test_aws_definition_has_a_head_and_a_worker_node_type() -> None:
    aws = load("cluster.yaml")
    assert aws["provider"]["type"] == "aws"
    types = aws["available_node_types"]
    assert aws["head_node_type"] in types
    workers = [name for name in types if name != aws["head_node_type"]]
    assert workers
    assert all(types[w]["max_workers"] >= types[w]["min_workers"] >= 1 for w in workers)


def test_nodes_install_the_pinned_ray_and_start_it_from_the_node_venv() -> None:
    onprem = load(ONPREM_YAML)
    setup = (ROOT / "scripts" / "node-setup").read_text()
    assert onprem["setup_commands"] == ["bash ~/herald/scripts/node-setup"]
    assert "-r requirements.lock" in setup
    assert re.search(r"^ray==2\.\d+\.\d+$", (ROOT / "requirements.lock").read_text(), re.MULTILINE)
    # `ray` comes from PATH, which node-env.sh (sourced from ~/.bashrc by node-setup) points at the node's venv.
    assert 'export PATH="$HERALD_HOME/.venv/bin:$PATH"' in (ROOT / "scripts" / "node-env.sh").read_text()
    assert all(
        cmd.startswith("ray ") for cmd in onprem["head_start_ray_commands"] + onprem["worker_start_ray_commands"]
    )


def test_no_service_address_lives_in_the_definitions() -> None:
    # Kafka, Redis and secrets are Herald settings (herald.toml / HERALD_*), never part of the YAML.
    for name in ("cluster.yaml", ONPREM_YAML):
        body = yaml.safe_dump({k: v for k, v in load(name).items() if k != "provider"})
        assert "9092" not in body
        assert "redis://" not in body
        assert "jwt" not in body.lower()


def test_render_replaces_hosts_auth_and_name_and_keeps_commands() -> None:
    template = (ROOT / ONPREM_YAML).read_text()
    rendered = yaml.safe_load(
        render_onprem(
            template,
            HOSTS,
            cluster_name="c1",
            project_dir=Path("/src/herald"),
            sources={"~/herald.toml": Path("/etc/herald/herald.toml")},
        )
    )
    assert rendered["cluster_name"] == "c1"
    assert rendered["provider"] == {"type": "local", "head_ip": "10.1.0.1", "worker_ips": ["10.1.0.2", "10.1.0.3"]}
    assert rendered["auth"] == {"ssh_user": "herald", "ssh_private_key": "/keys/id_ed25519"}
    assert rendered["file_mounts"] == {
        "~/herald": "/src/herald",
        "~/herald.toml": "/etc/herald/herald.toml",
        "~/.ray/auth_token": "~/.ray/auth_token",
    }
    original = load(ONPREM_YAML)
    for key in ("setup_commands", "head_start_ray_commands", "worker_start_ray_commands", "rsync_exclude"):
        assert rendered[key] == original[key]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("provider: {type: aws}\n", "only a `local` provider"),
        ("- a list\n", "must be a YAML mapping"),
        ("provider: [unclosed\n", "not valid YAML"),
    ],
)
def test_render_refuses_what_it_cannot_render(template: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        render_onprem(template, HOSTS, cluster_name="c", project_dir=Path("/src"))


def test_render_refuses_a_source_for_a_path_that_is_not_mounted() -> None:
    with pytest.raises(ConfigError, match="no remote path '~/elsewhere'"):
        render_onprem(
            (ROOT / ONPREM_YAML).read_text(),
            HOSTS,
            cluster_name="c",
            project_dir=Path("/src"),
            sources={"~/elsewhere": Path("/x")},
        )


def test_join_hint_names_token_mode_and_the_missing_token(tmp_path: Path) -> None:
    message = join_failure_hint("10.0.0.1:6379", "Authentication failed", {"HOME": str(tmp_path)})
    assert "could not join the Ray cluster at '10.0.0.1:6379': Authentication failed" in message
    assert "RAY_AUTH_MODE=token" in message
    assert f"{tmp_path}/.ray/auth_token" in message


def test_join_hint_with_token_mode_and_token_only_points_elsewhere(tmp_path: Path) -> None:
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("t")
    message = join_failure_hint(
        "10.0.0.1:6379", "Failed to connect to GCS", {"HOME": str(tmp_path), "RAY_AUTH_MODE": "token"}
    )
    assert "RAY_AUTH_MODE=token" not in message
    assert "no Ray token" not in message
    assert "check that the cluster at 10.0.0.1:6379 is up" in message
    assert message.endswith("unset HERALD_RAY_ADDRESS to run on a private local Ray runtime instead)")


def test_auto_is_the_address_ray_start_recorded_under_ray_tmpdir(tmp_path: Path) -> None:
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("10.0.0.1:6379\n")
    assert resolve_ray_address("auto", {"RAY_TMPDIR": str(tmp_path)}) == "10.0.0.1:6379"
    assert resolve_ray_address("10.9.9.9:6380", {"RAY_TMPDIR": str(tmp_path)}) == "10.9.9.9:6380"


def test_auto_without_a_recorded_cluster_never_falls_back_to_another_ray(tmp_path: Path) -> None:
    # Ray's own "auto" would join any GCS running on the machine; Herald refuses instead.
    with pytest.raises(ClusterJoinError, match="no Ray cluster was started on this node"):
        resolve_ray_address("auto", {"RAY_TMPDIR": str(tmp_path)})
