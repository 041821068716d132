"""SecurityConfig (ps.security) and the `--ps-*` options: validated, frozen, paths only, never a secret."""

from __future__ import annotations

import dataclasses
import pickle

import click
import pytest

from ps.security import SecurityConfig, SecurityError
from shark.cli.options import cluster_config, security_config
from shark.coordinator.config import ClusterConfig

TOKEN = "s3cr3t-token-value-0123456789"


def _cli_kw(**ps: str | None) -> dict:
    base = {"address": None, "shards": 2, "workers": 2, "staleness": 2, "checkpoint_dir": None,
            "checkpoint_every": 0, "worker_threads": 1, "score_rows": 0, "shard_cpus": 0.5, "worker_cpus": 1.0,
            "placement": "spread", "shard_resources": None, "worker_resources": None}
    keys = ("ps_token_file", "ps_token_env", "ps_tls_cert", "ps_tls_key", "ps_tls_ca", "ps_client_cert",
            "ps_client_key", "ps_tls_server_name")
    return {**base, **{k: ps.get(k) for k in keys}}


def test_default_is_off_and_frozen() -> None:
    sec = SecurityConfig()
    assert not sec.enabled and sec.read_token() is None and sec.describe()["token"] is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        sec.token_file = "x"  # type: ignore[misc]
    assert ClusterConfig().security == sec
    assert pickle.loads(pickle.dumps(SecurityConfig(token_env="T"))) == SecurityConfig(token_env="T")


def test_token_from_file_and_env(tmp_path, monkeypatch) -> None:
    f = tmp_path / "tok"
    f.write_text(TOKEN + "\n")
    assert SecurityConfig(token_file=str(f)).read_token() == TOKEN
    monkeypatch.setenv("PS_TOK", TOKEN)
    sec = SecurityConfig(token_env="PS_TOK")
    assert sec.read_token() == TOKEN and TOKEN not in repr(sec)
    f.write_text("has space in the middle of it")
    with pytest.raises(SecurityError, match="printable ASCII") as e:
        SecurityConfig(token_file=str(f)).read_token()
    assert "in the middle" not in str(e.value)


def test_cli_options_build_the_cluster_security(tmp_path) -> None:
    for name in ("ca.pem", "s.pem", "s.key", "c.pem", "c.key", "tok"):
        (tmp_path / name).write_text("x")
    kw = _cli_kw(ps_token_file=str(tmp_path / "tok"), ps_tls_cert=str(tmp_path / "s.pem"),
                 ps_tls_key=str(tmp_path / "s.key"), ps_tls_ca=str(tmp_path / "ca.pem"),
                 ps_client_cert=str(tmp_path / "c.pem"), ps_client_key=str(tmp_path / "c.key"))
    cluster = cluster_config(kw)
    sec = cluster.security
    assert sec.require_client_cert and sec.client_tls and sec.server_tls and sec.token_file.endswith("tok")
    assert not any(k.startswith("ps_") for k in kw)  # every option consumed
    assert security_config(_cli_kw()) == SecurityConfig()


def test_cli_rejects_inconsistent_security(tmp_path) -> None:
    with pytest.raises(click.BadParameter, match="not both"):
        cluster_config(_cli_kw(ps_token_file="/x", ps_token_env="Y"))
    with pytest.raises(click.BadParameter, match="tls_ca"):
        cluster_config(_cli_kw(ps_tls_cert="/a", ps_tls_key="/b"))
    with pytest.raises(click.BadParameter, match="NAME") as e:
        cluster_config(_cli_kw(ps_token_env=TOKEN))
    assert TOKEN not in str(e.value)
    with pytest.raises(ValueError, match="security"):
        ClusterConfig(security=SecurityConfig(tls_ca="/ca"))  # clients on TLS, shards plaintext
