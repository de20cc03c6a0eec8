"""The secret store over the real embedded store: sealing, versions, listing, ACLs, key rotation."""
from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from framework.errors import SecurityError, SpecError
from framework.store import open_store
from scheduler.secrets.acl import SecretAcls
from scheduler.secrets.crypto import DecryptError, Keyring, generate_key, read_key_file, write_key_file
from scheduler.secrets.refs import SecretUse, acting_as
from scheduler.secrets.store import Forbidden, NotFound, SecretUnavailable, SecretsOff, check_settings, open_secrets

VALUE = b"s3cr3t-" + os.urandom(12).hex().encode()


def key_file(tmp_path: Path, *keys: str) -> Path:
    path = tmp_path / "secrets.key"
    write_key_file(path, list(keys) or [generate_key()])
    return path


def state_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())


def test_values_are_sealed_in_the_journal_and_versions_count_writes(tmp_path: Path) -> None:
    store = open_store(tmp_path / "data")
    secrets = open_secrets(store, str(key_file(tmp_path)))
    meta, created = secrets.put("/db/password", VALUE, "operator")
    assert created and (meta.path, meta.version, meta.size, meta.created_by) == ("db/password", 1, len(VALUE), "operator")
    meta, created = secrets.put("db/password", VALUE + b"2", "alice")
    assert not created and meta.version == 2 and meta.updated_by == "alice" and meta.created_by == "operator"
    store.sync()
    raw = state_bytes(tmp_path / "data")
    assert VALUE not in raw and base64.b64encode(VALUE) not in raw and b"db/password" in raw
    [(use, value, version)] = secrets.resolve([SecretUse("pw", "db/password", env="PW")])
    assert (value, version) == (VALUE + b"2", 2)
    store.close()
    again = open_secrets(open_store(tmp_path / "data"), str(tmp_path / "secrets.key"))  # after a restart
    assert again.get("db/password").version == 2
    assert again.resolve([SecretUse("pw", "db/password", path="pw")])[0][1] == VALUE + b"2"


def test_list_delete_and_paths(tmp_path: Path) -> None:
    secrets = open_secrets(open_store(tmp_path / "data"), str(key_file(tmp_path)))
    for path in ("team-a/db", "team-a/api/token", "team-ab/x", "top"):
        secrets.put(path, b"v", None)
    assert [m.path for m in secrets.list("team-a")] == ["team-a/api/token", "team-a/db"]
    assert len(secrets.list()) == 4
    secrets.delete("team-a/db", None)
    with pytest.raises(NotFound):
        secrets.get("team-a/db")
    with pytest.raises(SecretUnavailable, match="no longer exists"):
        secrets.resolve([SecretUse("db", "team-a/db", env="DB")])
    for bad in ("", "a//b/..", "a/../b", "sp ace", "x" * 300):
        with pytest.raises(SpecError):
            secrets.put(bad, b"v", None)
    with pytest.raises(SpecError, match="at most"):
        secrets.put("big", b"x" * (64 * 1024 + 1), None)


def test_an_env_secret_must_be_text_without_nul(tmp_path: Path) -> None:
    secrets = open_secrets(open_store(tmp_path / "data"), str(key_file(tmp_path)))
    secrets.put("bin", b"\xff\x00\x01", None)
    assert secrets.resolve([SecretUse("b", "bin", path="b")])[0][1] == b"\xff\x00\x01"  # a file may hold anything
    with pytest.raises(SecretUnavailable, match="environment variable B"):
        secrets.resolve([SecretUse("b", "bin", env="B")])


def test_a_value_sealed_for_one_path_does_not_open_at_another(tmp_path: Path) -> None:
    keyring = Keyring((generate_key(),))
    token = keyring.seal("a", b"value")
    assert keyring.open("a", token) == b"value"
    with pytest.raises(DecryptError, match="another path"):
        keyring.open("b", token)
    with pytest.raises(DecryptError, match="any key"):
        Keyring((generate_key(),)).open("a", token)
    assert generate_key() not in repr(keyring) and keyring.keys[0] not in repr(keyring)


def test_key_file_must_be_private_and_hold_keys(tmp_path: Path) -> None:
    path = key_file(tmp_path)
    os.chmod(path, 0o644)
    with pytest.raises(SecurityError, match="chmod 600"):
        read_key_file(path)
    os.chmod(path, 0o600)
    path.write_text("# nothing\n")
    with pytest.raises(SecurityError, match="no key"):
        read_key_file(path)
    path.write_text("not-a-key\n")
    with pytest.raises(SecurityError, match="line 1: not a Fernet key"):
        read_key_file(path)
    with pytest.raises(SecurityError, match="needs --secrets-key-file"):
        check_settings(None, str(tmp_path / "acls.json"))


def test_rotation_reseals_every_secret_and_loses_none(tmp_path: Path) -> None:
    store = open_store(tmp_path / "data")
    path = key_file(tmp_path)
    old = read_key_file(path)[0]
    secrets = open_secrets(store, str(path))
    for index in range(5):
        secrets.put(f"s{index}", VALUE + str(index).encode(), None)
    first = secrets.keyring.current
    result = secrets.rotate(generate=True)
    assert result["rotated"] == 5 and result["key"] != first and result["retired"] == [first]
    assert read_key_file(path)[1] == old, "the old key stays in the file until pruned"
    assert all(m.key == result["key"] for m in secrets.list())
    result = secrets.rotate(prune=True)
    assert result["rotated"] == 0 and result["pruned"] and read_key_file(path) == [secrets.keyring.keys[0]]
    # Only the new key left: every secret still opens, in this scheduler and the next.
    store.close()
    again = open_secrets(open_store(tmp_path / "data"), str(path))
    for index in range(5):
        assert again.resolve([SecretUse("x", f"s{index}", path="x")])[0][1] == VALUE + str(index).encode()
    # An operator's own rotation: a new key on top of the file, then rotate-key without --generate.
    write_key_file(path, [generate_key(), *read_key_file(path)])
    assert again.rotate()["rotated"] == 5


def test_check_names_unknown_sources_and_asks_the_acls(tmp_path: Path) -> None:
    acls = tmp_path / "acls.json"
    acls.write_text('{"permissive": false, "reference_secrets": ['
                    '{"principals": {"values": ["alice"]}, "paths": {"values": ["team-a/"]}},'
                    '{"principals": {"values": ["operator"]}, "paths": {"type": "ANY"}}],'
                    '"write_secrets": [{"principals": {"values": ["operator"]}, "paths": {"type": "ANY"}}]}')
    secrets = open_secrets(open_store(tmp_path / "data"), str(key_file(tmp_path)), str(acls))
    secrets.put("team-a/db", b"v", "operator")
    secrets.put("team-b/db", b"v", "operator")
    with pytest.raises(Forbidden, match="alice.*may not write"):
        secrets.put("team-a/other", b"v", "alice")
    where = lambda name: f"/secrets/{name}/source"  # noqa: E731
    with acting_as("alice"):
        secrets.check({"db": "team-a/db"}, where)
        with pytest.raises(Forbidden, match="Principal 'alice' may not reference secret 'team-b/db'"):
            secrets.check({"db": "team-b/db"}, where)
        with pytest.raises(SpecError) as caught:
            secrets.check({"db": "team-a/nope"}, where)
    assert caught.value.field == "/secrets/db/source" and "team-a/nope" in caught.value.message
    with acting_as("operator"):
        secrets.check({"a": "team-a/db", "b": "team-b/db"}, where)
    with acting_as("mallory"):
        with pytest.raises(Forbidden):
            secrets.check({"db": "team-a/db"}, where)


def test_acl_path_values_cover_whole_segments() -> None:
    acls = SecretAcls.from_json({"permissive": False, "reference_secrets": [
        {"principals": {"type": "ANY"}, "paths": {"values": ["team-a", "/exact/one"]}}]})
    allowed = lambda path: acls.allowed("reference_secrets", "x", path)  # noqa: E731
    assert allowed("team-a/db") and allowed("team-a") and allowed("exact/one")
    assert not allowed("team-ab/db") and not allowed("exact/other")
    with pytest.raises(SecurityError, match="unknown ACL action"):
        SecretAcls.from_json({"reference_secret": []})


def test_without_a_key_file_secrets_are_refused_as_marathon_does() -> None:
    off = SecretsOff()
    off.check({}, lambda name: "/secrets")
    with pytest.raises(SpecError, match="Feature secrets is not enabled"):
        off.check({"pw": "db/pw"}, lambda name: "/secrets")


def test_zookeeper_holds_only_sealed_values(tmp_path: Path, zk) -> None:  # noqa: ANN001 - the session's ZooKeeper
    import uuid

    from kazoo.client import KazooClient

    root = f"/test-secrets-{uuid.uuid4().hex[:8]}"
    store = open_store(zk_url=f"zk://{zk.hosts}{root}")
    secrets = open_secrets(store, str(key_file(tmp_path)))
    secrets.put("db/password", VALUE, "operator")
    secrets.put("db/password", VALUE, "operator")
    store.close()
    client = KazooClient(hosts=zk.hosts)
    client.start()
    try:
        def walk(path: str) -> bytes:
            data, _ = client.get(path)
            return (data or b"") + b"".join(walk(f"{path}/{child}") for child in client.get_children(path))
        everything = walk(root)
    finally:
        client.stop()
    assert b"db/password" in everything and VALUE not in everything and base64.b64encode(VALUE) not in everything
    again = open_secrets(open_store(zk_url=f"zk://{zk.hosts}{root}"), str(tmp_path / "secrets.key"))
    assert again.get("db/password").version == 2
    assert again.resolve([SecretUse("pw", "db/password", env="PW")])[0][1] == VALUE
    again.store.close()
