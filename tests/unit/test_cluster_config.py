"""`[cluster]` and `confirm_domain` (issue 21, docs/configuration.md)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gateway.config import Config, ConfigError, load_config
from tests.unit.test_store_backend import MINIMAL

pytestmark = pytest.mark.unit

PG = '[store]\nbackend = "postgresql"\ndsn = "host=127.0.0.1 dbname=cpim"\n'


def load(text: str, tmp_path: Path) -> Config:
    return load_config(tomllib.loads(MINIMAL + text), base_dir=tmp_path, env={})


def test_off_by_default_with_a_process_unique_id(tmp_path: Path) -> None:
    c = load("", tmp_path).cluster
    assert not c.enabled and c.instance_id and c.binding_cache == 1.0


def test_enabled_needs_the_shared_store(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load("[cluster]\nenabled = true\n", tmp_path)
    assert err.value.path == "cluster.enabled"
    cfg = load(PG + '[cluster]\nenabled = true\ninstance_id = "a"\nbinding_cache = 0\n', tmp_path)
    assert cfg.cluster.enabled and cfg.cluster.instance_id == "a"
    assert cfg.cluster.binding_cache == 0.0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("lease_renew = 13\n", "cluster.lease_renew"),  # not below ttl - margin
        ("binding_cache = -1\n", "cluster.binding_cache"),
        ("lease_ttl = 0\n", "cluster.lease_ttl"),
        ("sweep = 1\n", "cluster.sweep"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(PG + "[cluster]\n" + text, tmp_path)
    assert err.value.path == key


def test_confirm_domain_per_component(tmp_path: Path) -> None:
    cfg = load("", tmp_path)
    assert all(c.confirm_domain is None for c in cfg.xmpp.components)
    text = MINIMAL.replace(
        "[[xmpp.components]]\n", '[[xmpp.components]]\nconfirm_domain = "A.Confirm.sip.localhost"\n'
    )
    assert text != MINIMAL
    cfg = load_config(tomllib.loads(text), base_dir=tmp_path, env={})
    assert cfg.xmpp.components[0].confirm_domain == "a.confirm.sip.localhost"
