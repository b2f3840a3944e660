"""The checkpoint-directory lock (``distgrad.checkpoint.lock``): one job writes a directory;
a live owner is refused by name, a stale one is taken over with a message."""

import json
import logging
import os
import socket

import pytest

import distgrad as dg
from distgrad import nn
from distgrad.checkpoint import CheckpointManager, DirectoryLock, DirectoryLockedError
from distgrad.checkpoint.lock import LOCK_NAME, LockOwner

GONE_PID = 2**22 + 12345  # above Linux's largest pid_max: no such process


def write_lock(directory, **fields):
    record = {"host": socket.gethostname(), "pid": GONE_PID, "start_time": "1", "since": 0.0}
    record.update(fields)
    directory.mkdir(exist_ok=True)
    (directory / LOCK_NAME).write_text(json.dumps(record))


def test_lock_names_its_owner_and_is_released(tmp_path):
    with DirectoryLock(tmp_path / "ckpt") as lock:
        owner = lock.owner()
        assert (owner.host, owner.pid) == (socket.gethostname(), os.getpid())
        assert lock.held
    assert not (tmp_path / "ckpt" / LOCK_NAME).exists()
    assert os.listdir(tmp_path / "ckpt") == []  # no temporaries left


def test_live_owner_is_refused_by_host_and_pid(tmp_path):
    with DirectoryLock(tmp_path):
        before = (tmp_path / LOCK_NAME).read_text()
        with pytest.raises(DirectoryLockedError) as info:
            DirectoryLock(tmp_path, wait=0.2).acquire()
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in str(info.value)
        assert str(tmp_path / LOCK_NAME) in str(info.value)
        assert (tmp_path / LOCK_NAME).read_text() == before  # a failed call changes nothing


@pytest.mark.parametrize(
    "owner",
    [{"pid": GONE_PID}, {"pid": os.getpid(), "start_time": "reused-pid"}],
    ids=["process gone", "pid reused"],
)
def test_stale_lock_is_taken_over_with_a_message(tmp_path, caplog, owner):
    write_lock(tmp_path, **owner)
    with caplog.at_level(logging.WARNING, logger="distgrad.checkpoint.lock"):
        with DirectoryLock(tmp_path) as lock:
            assert lock.owner().pid == os.getpid()
    assert f"taking over the lock of pid {owner['pid']} on host" in caplog.text


def test_owner_on_another_host_counts_as_alive(tmp_path):
    write_lock(tmp_path, host="some-other-host.example")
    with pytest.raises(DirectoryLockedError, match="on host some-other-host.example.*another host"):
        DirectoryLock(tmp_path).acquire()
    assert LockOwner.from_json((tmp_path / LOCK_NAME).read_text()).pid == GONE_PID


def test_unreadable_lock_is_not_overwritten(tmp_path):
    (tmp_path / LOCK_NAME).write_text("garbage")
    with pytest.raises(DirectoryLockedError, match="does not name an owner"):
        DirectoryLock(tmp_path).acquire()
    assert (tmp_path / LOCK_NAME).read_text() == "garbage"


def test_checkpoint_manager_locks_its_directory(tmp_path):
    model = nn.Linear(2, 2)
    first = CheckpointManager(
        tmp_path, model=model, optimizer=dg.optim.SGD(model.parameters(), 0.1)
    )
    assert first.restore() is None
    first.save(1)
    owner = DirectoryLock(tmp_path).owner()
    assert owner.pid == os.getpid()
    second = CheckpointManager(tmp_path, model=model)
    with pytest.raises(DirectoryLockedError, match=f"pid {os.getpid()} on host"):
        second.save(2)
    assert first.latest().endswith("ckpt-000000001")  # the refused save wrote nothing
    first.close()
    second.save(2)  # released: the other manager may write now
    assert second.latest().endswith("ckpt-000000002")
    second.close()
    assert not (tmp_path / LOCK_NAME).exists()
