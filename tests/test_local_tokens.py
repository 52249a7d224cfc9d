"""The manager's tokens of a local cluster (``qwc cluster up``, ``qwc demo``): made up when
the settings give none, kept in the data directory with mode 0600 and the same on the next
start, the configured ones taken as they are; the page's address carries the read token
in its fragment; a notify worker is part of the local topology when asked for (``qwc
cluster up`` always asks: the jobs' own webhooks may be added at any time)."""

from __future__ import annotations

from pathlib import Path

from schemas.settings import Settings
from workers.localcluster.cluster_plan import member_identities, topology
from workers.localcluster.cluster_up import TOKENS_FILE, local_tokens, page_url


def test_missing_tokens_are_made_up_kept_private_and_reused(tmp_path: Path) -> None:
    access = local_tokens(Settings(), tmp_path)
    write, read = access.env["QWC_MANAGER_TOKEN"], access.env["QWC_MANAGER_READTOKEN"]
    assert len(write) >= 32 and len(read) >= 32 and write != read
    assert access.read_token == read and access.file == tmp_path / TOKENS_FILE
    assert access.file.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [TOKENS_FILE]  # no temporary file left
    again = local_tokens(Settings(), tmp_path)
    assert again == access  # a cluster started again keeps its tokens (and its page's address)
    other = local_tokens(Settings(), tmp_path / "other")
    assert other.env["QWC_MANAGER_TOKEN"] != write


def test_configured_tokens_are_taken_as_they_are(tmp_path: Path) -> None:
    both = Settings(manager_token="admin-token", manager_read_token="read-token")  # type: ignore[arg-type]
    access = local_tokens(both, tmp_path)
    assert (access.env, access.read_token, access.file) == ({}, "read-token", None)
    assert list(tmp_path.iterdir()) == []
    write_only = Settings(manager_token="admin-token")  # type: ignore[arg-type]
    access = local_tokens(write_only, tmp_path)
    assert list(access.env) == ["QWC_MANAGER_READTOKEN"]
    assert access.read_token == access.env["QWC_MANAGER_READTOKEN"]


def test_open_reads_need_no_read_token(tmp_path: Path) -> None:
    access = local_tokens(Settings(manager_read_open=True), tmp_path)
    assert list(access.env) == ["QWC_MANAGER_TOKEN"] and access.read_token is None


def test_the_page_address() -> None:
    assert page_url("127.0.0.1", 4440, None) == "http://127.0.0.1:4440/ui/"
    assert page_url("0.0.0.0", 80, "a/b+c=") == "http://127.0.0.1:80/ui/#token=a%2Fb%2Bc%3D"
    assert page_url("::1", 4440, "t") == "http://[::1]:4440/ui/#token=t"


def test_the_topology_has_a_notify_worker_when_receivers_are_configured() -> None:
    members = member_identities(1, prefix="qwc")
    assert "notify-1" not in [s.label for s in topology(members)]
    specs = {s.label: s.args for s in topology(members, notify=1)}
    assert specs["notify-1"] == ("worker", "notify", "--consumer", "notify-1")
