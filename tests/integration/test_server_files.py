"""The server's secret files are owner-only from their creation (no PostgreSQL needed)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tracking import server
from tracking.server import ServerInfo, write_secret


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_modes(monkeypatch):
    """The mode each ``os.open`` that creates a file asks for, by path."""
    seen: dict[str, int] = {}
    real_open = os.open

    def recording_open(path, flags, mode=0o777, *args, **kwargs):
        if flags & os.O_CREAT:
            seen[str(path)] = mode
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    return seen


def test_postgres_password_file_is_created_owner_only(tmp_path, monkeypatch, open_modes):
    info = ServerInfo(root=str(tmp_path), host="127.0.0.1", port=1, pg_port=2, password="s3cret")
    pwfile = info.pg_data.parent / "pwfile"
    pwfile.parent.mkdir(parents=True)
    pwfile.write_text("stale, world-readable")
    pwfile.chmod(0o644)
    during_initdb: list[tuple[int, str]] = []

    def fake_run(cmd, what, **kwargs):  # initdb reads the file here
        during_initdb.append((_mode(pwfile), pwfile.read_text()))
        return ""

    chmods: list[str] = []
    monkeypatch.setattr(server, "_pg_user", lambda: None)
    monkeypatch.setattr(server, "_run", fake_run)
    monkeypatch.setattr(os, "chmod", lambda path, mode, **kw: chmods.append(str(path)))
    old_umask = os.umask(0)  # a umask cannot be what keeps it private
    try:
        server._init_postgres(info, tmp_path)
    finally:
        os.umask(old_umask)
    assert open_modes[str(pwfile)] == 0o600  # created 600, not created 644 and changed
    assert during_initdb == [(0o600, "s3cret\n")]
    assert str(pwfile) not in chmods
    assert not pwfile.exists()  # removed once initdb has read it


def test_write_secret_replaces_a_wider_file_and_does_not_follow_links(tmp_path):
    old_umask = os.umask(0)
    try:
        path = tmp_path / "secret"
        path.write_text("old")
        path.chmod(0o666)
        write_secret(path, "new")
        assert (path.read_text(), _mode(path)) == ("new", 0o600)
        victim = tmp_path / "victim"
        victim.write_text("keep")
        link = tmp_path / "link"
        link.symlink_to(victim)
        write_secret(link, "x")  # the link is replaced, its target untouched
        assert victim.read_text() == "keep" and not link.is_symlink()
        assert _mode(link) == 0o600
    finally:
        os.umask(old_umask)


def test_server_state_file_is_owner_only(tmp_path, open_modes):
    info = ServerInfo(root=str(tmp_path), host="127.0.0.1", port=1, pg_port=2, password="pw")
    server._save(info)
    assert _mode(tmp_path / server.STATE_FILE) == 0o600
    assert open_modes[str(tmp_path / "server.tmp")] == 0o600
