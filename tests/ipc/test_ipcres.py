"""IPC resources: keys, creation, hand-over to nodes, records, removal (ipc/).

Real SysV objects are made here; every test that makes one requests
``no_leftovers``, which fails when any queue, segment or semaphore set is new
afterwards. Foreign objects (made "by somebody else") are removed by the test.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sysv_ipc
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.errors import IpcError
from orchestrator.ipc import resources as ipcres
from orchestrator.ipc.keys import (
    KEY_LIMIT,
    auto_key,
    auto_key_candidates,
    env_prefix,
    keys_in_use,
    live_table,
)
from orchestrator.ipc.records import describe, remove_records, summary
from orchestrator.ipc.resources import create_all, open_from_env
from orchestrator.plan import IpcPlan, Plan, ReplicaPlan
from orchestrator.spec.planner import ipc_plan
from tests.conftest import Leftovers

names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,20}", fullmatch=True)


def make_plan(run_dir: Path, *ipc: IpcPlan, run_id: str = "r1",
              replicas: tuple[ReplicaPlan, ...] = ()) -> Plan:
    return Plan(run_id=run_id, run_dir=str(run_dir), file="/t.yaml", replicas=replicas,
                ipc={p.name: p for p in ipc})


def rp(node: str, *ipc: str) -> ReplicaPlan:
    return ReplicaPlan(node=node, replica=0, kind="run", run="m:f", ipc=ipc)


@pytest.fixture
def foreign() -> Iterator[list[Any]]:
    """SysV objects the test makes as 'somebody else'; removed at the end whatever happens."""
    made: list[Any] = []
    yield made
    for obj in made:
        with contextlib.suppress(sysv_ipc.ExistentialError):
            obj.remove()


def free_key(start: int = 0x51A0_0000) -> int:
    used = keys_in_use()
    return next(k for k in range(start, start + 10_000) if k not in used)


def all_kinds(tmp_path: Path) -> list[IpcPlan]:
    return [
        IpcPlan("jobs", "msgqueue", key_from="auto", max_bytes=2048),
        IpcPlan("frame", "shm", key_from="auto", size=4096, mode=0o640),
        IpcPlan("room", "semaphore", key_from="auto", value=3),
        IpcPlan("pipe", "socketpair", between=("a", "b")),
        IpcPlan("log", "fifo", path=str(tmp_path / "fifo" / "log"), mode=0o620),
    ]


# -- keys (pure) ----------------------------------------------------------------------------------


@given(names, names)
def test_auto_keys_are_positive_c_ints_and_the_same_for_the_same_run_and_name(
        run_id: str, name: str) -> None:
    first = list(zip(range(5), auto_key_candidates(run_id, name), strict=False))
    again = list(zip(range(5), auto_key_candidates(run_id, name), strict=False))
    assert first == again
    assert all(0 < key < KEY_LIMIT for _, key in first)


@given(names, st.sets(st.integers(1, KEY_LIMIT - 1), max_size=20))
def test_auto_key_is_the_first_candidate_not_taken(name: str, taken: set[int]) -> None:
    candidates = auto_key_candidates("run", name)
    expected = next(k for k in candidates if k not in taken)
    assert auto_key("run", name, taken) == expected


def test_two_runs_get_different_keys_for_the_same_resource_names() -> None:
    keys = {auto_key(f"run{i}", "jobs", set()) for i in range(200)}
    assert len(keys) == 200
    # Even when run b's first choice is what run a holds, b moves on to its next candidate.
    a = auto_key("a", "jobs", set())
    b_first = next(auto_key_candidates("b", "jobs"))
    assert auto_key("b", "jobs", {a, b_first}) not in (a, b_first)


@given(names)
def test_env_prefix_is_a_shell_name(name: str) -> None:
    prefix = env_prefix(name)
    assert prefix.startswith("TOPO_IPC_") and prefix.replace("_", "").isalnum()


def test_live_table_reads_proc_sysvipc_columns(tmp_path: Path) -> None:
    (tmp_path / "msg").write_text(
        "       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid"
        "      stime      rtime      ctime\n"
        "     22700          3   600          24          2     0     0     0     0     0     0"
        "          0          0 1795838897\n")
    (tmp_path / "shm").write_text(
        "       key      shmid perms                  size  cpid  lpid nattch\n"
        "        42          7  1640                  4096    10    11      2\n")
    (tmp_path / "sem").write_text("       key      semid perms      nsems\n")
    msg = live_table("msg", tmp_path)[3]
    assert (msg.key, msg.id, msg.mode, msg.columns["qnum"], msg.columns["cbytes"]) == \
        (22700, 3, 0o600, 2, 24)
    shm = live_table("shm", tmp_path)[7]
    assert shm.mode == 0o640 and shm.columns["nattch"] == 2  # SHM_DEST bit left out of the mode
    assert live_table("sem", tmp_path) == {} and live_table("nope", tmp_path) == {}
    assert keys_in_use(tmp_path) == {22700, 42}


def test_planner_keeps_explicit_keys_and_leaves_auto_and_ftok_for_creation(tmp_path: Path) -> None:
    from orchestrator.spec.model import IpcSpec

    explicit = ipc_plan("a", IpcSpec(type="msgqueue", key=77), "/top", "/run", {})
    assert (explicit.key, explicit.key_from) == (77, "")
    auto = ipc_plan("b", IpcSpec(type="semaphore", value=2), "/top", "/run", {})
    assert (auto.key, auto.key_from, auto.value) == (None, "auto", 2)
    ftok = ipc_plan("c", IpcSpec(type="shm", size=10, key="ftok:data/x:q"), "/top", "/run", {})
    assert ftok.key_from == "ftok:/top/data/x:q"
    fifo = ipc_plan("d", IpcSpec(type="fifo"), "/top", "/run", {})
    assert (fifo.path, fifo.key, fifo.key_from) == ("/run/fifo/d", None, "")
    pair = ipc_plan("e", IpcSpec(type="socketpair", between=["x", "y"]), "/top", "/run", {})
    assert pair.between == ("x", "y") and pair.key_from == ""


# -- creation ------------------------------------------------------------------------------------


def test_create_all_makes_every_kind_as_declared_and_removes_them(
        tmp_path: Path, no_leftovers: Leftovers) -> None:
    seen: list[list[dict[str, Any]]] = []
    res = create_all(make_plan(tmp_path, *all_kinds(tmp_path)), on_change=seen.append)
    try:
        records = {r["name"]: r for r in res.records()}
        assert [len(s) for s in seen] == [1, 2, 3, 4, 5]  # recorded one by one as made
        for name, kind in (("jobs", "msg"), ("frame", "shm"), ("room", "sem")):
            row = live_table(kind)[records[name]["id"]]
            assert row.key == records[name]["key"] != 0
        assert live_table("msg")[records["jobs"]["id"]].mode == 0o600
        assert live_table("shm")[records["frame"]["id"]].mode == 0o640
        assert sysv_ipc.MessageQueue(records["jobs"]["key"]).max_size == 2048
        assert sysv_ipc.Semaphore(records["room"]["key"]).value == 3
        segment = res.items["frame"].obj
        assert segment.size == 4096 and not segment.attached  # the supervisor holds no attachment
        fifo = Path(records["log"]["path"])
        assert stat.S_ISFIFO(fifo.lstat().st_mode) and stat.S_IMODE(fifo.lstat().st_mode) == 0o620
        assert len(records["pipe"]["fds"]) == 2 and records["pipe"]["between"] == ["a", "b"]
        said = describe(res.records())
        assert {d["name"]: d["live"] for d in said} == {n: True for n in records}
    finally:
        removed = res.remove()
    assert sorted(s.split()[1] for s in removed) == ["message", "semaphore", "shared-memory"]
    assert not fifo.exists()
    assert all(not d["live"] for d in describe(list(records.values()))
               if d["type"] != "socketpair")


def test_env_and_fds_go_to_the_nodes_that_list_a_resource(tmp_path: Path,
                                                          no_leftovers: Leftovers) -> None:
    res = create_all(make_plan(tmp_path, *all_kinds(tmp_path)))
    try:
        rec = {r["name"]: r for r in res.records()}
        a = rp("a", "jobs", "pipe", "log")
        env = res.env_for(a)
        assert env == {
            "TOPO_IPC_JOBS_TYPE": "msgqueue", "TOPO_IPC_JOBS_KEY": str(rec["jobs"]["key"]),
            "TOPO_IPC_JOBS_ID": str(rec["jobs"]["id"]),
            "TOPO_IPC_PIPE_TYPE": "socketpair", "TOPO_IPC_PIPE_FD": str(rec["pipe"]["fds"][0]),
            "TOPO_IPC_LOG_TYPE": "fifo", "TOPO_IPC_LOG_PATH": rec["log"]["path"],
        }
        assert res.fds_for(a) == (rec["pipe"]["fds"][0],)
        assert res.fds_for(rp("b", "pipe")) == (rec["pipe"]["fds"][1],)
        assert res.fds_for(rp("c", "jobs")) == () and res.env_for(rp("c")) == {}
        # A Python program exec'd as a command node opens the same objects from that env.
        b = rp("b", "frame", "room", "jobs")
        opened = open_from_env(b.ipc, res.env_for(b))
        assert opened["frame"].id == rec["frame"]["id"] and opened["frame"].attached
        assert opened["room"].value == 3 and opened["jobs"].id == rec["jobs"]["id"]
        ipcres.close_objects(opened)
        assert not opened["frame"].attached
        bad = {**res.env_for(b), "TOPO_IPC_ROOM_ID": str(rec["room"]["id"] + 1)}
        with pytest.raises(IpcError, match="no longer the one topo made"):
            open_from_env(("room",), bad)
        with pytest.raises(IpcError, match="cannot open IPC resource jobs"):
            open_from_env(("jobs",), {"TOPO_IPC_JOBS_TYPE": "msgqueue"})
    finally:
        res.remove()


def test_a_forked_child_keeps_only_its_own_socketpair_end(tmp_path: Path,
                                                          no_leftovers: Leftovers) -> None:
    res = create_all(make_plan(tmp_path, *all_kinds(tmp_path)))
    try:
        a_end, b_end = res.records()[3]["fds"]
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            code = 1
            try:
                objects = res.enter_child(rp("a", "pipe", "frame", "log"))
                closed = []
                for fd in (a_end, b_end):
                    try:
                        os.fstat(fd)
                    except OSError:
                        closed.append(fd)
                objects["pipe"].sendall(b"ping")
                frame = objects["frame"]
                frame.write(b"abc")
                report = f"{closed} {frame.attached} {objects['log']}"
                os.write(w, report.encode())
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        report = os.read(r, 1000).decode()
        os.close(r)
        assert os.waitstatus_to_exitcode(status) == 0
        assert report == f"[{b_end}] True {tmp_path / 'fifo' / 'log'}"
        b = res.items["pipe"].ends["b"]
        b.settimeout(5)
        assert b.recv(4) == b"ping"
        segment = res.items["frame"].obj
        segment.attach()
        assert segment.read(3, 0) == b"abc"  # what the child wrote stays
        segment.detach()
    finally:
        res.remove()


# -- failures: a sentence, and nothing left --------------------------------------------------------


def test_a_key_taken_by_a_foreign_object_fails_and_removes_what_was_made(
        tmp_path: Path, no_leftovers: Leftovers, foreign: list[Any]) -> None:
    key = free_key()
    foreign.append(sysv_ipc.MessageQueue(key, sysv_ipc.IPC_CREX, 0o600))
    before = live_table("msg")
    plan = make_plan(tmp_path, *all_kinds(tmp_path)[1:], IpcPlan("mine", "msgqueue", key=key))
    states: list[list[dict[str, Any]]] = []
    with pytest.raises(IpcError) as err:
        create_all(plan, on_change=states.append)
    text = str(err.value)
    assert f"the key {key:#x} of IPC resource mine is taken by an existing message queue " \
           f"(id {foreign[0].id}) that this run did not create" in text
    assert f"ipcrm -q {foreign[0].id}" in text
    assert live_table("msg") == before  # the foreign queue is still there, untouched
    assert states[-1] == []  # the state file is told nothing is left
    assert not (tmp_path / "fifo" / "log").exists()


def test_an_auto_key_that_turns_out_taken_moves_on_to_the_next(
        tmp_path: Path, no_leftovers: Leftovers, foreign: list[Any]) -> None:
    first = next(auto_key_candidates("r1", "jobs"))
    with contextlib.suppress(sysv_ipc.ExistentialError):
        foreign.append(sysv_ipc.MessageQueue(first, sysv_ipc.IPC_CREX, 0o600))
    # keys_taken sees nothing: as when another run took the key between our look and our create.
    res = create_all(make_plan(tmp_path, IpcPlan("jobs", "msgqueue", key_from="auto")),
                     keys_taken=set)
    try:
        assert res.records()[0]["key"] not in (first, 0)
    finally:
        res.remove()
    assert foreign and sysv_ipc.MessageQueue(first).id == foreign[0].id


def test_two_runs_side_by_side_never_share_a_key(tmp_path: Path, no_leftovers: Leftovers) -> None:
    plans = [make_plan(tmp_path / run, *all_kinds(tmp_path / run)[:3], run_id=run)
             for run in ("left", "right")]
    left = create_all(plans[0])
    # Even if right's candidates were left's keys, it would see them in use and move on.
    right = create_all(plans[1])
    try:
        keys = [{r["key"] for r in res.records()} for res in (left, right)]
        assert len(keys[0]) == len(keys[1]) == 3 and not keys[0] & keys[1]
    finally:
        left.remove()
        right.remove()


def test_the_kernel_refusing_a_size_is_a_sentence(tmp_path: Path, no_leftovers: Leftovers) -> None:
    huge = IpcPlan("frame", "shm", key_from="auto", size=2**50)
    with pytest.raises(IpcError, match=r"the kernel refused shared-memory segment frame of "
                                       rf"{2**50} bytes"):
        create_all(make_plan(tmp_path, IpcPlan("q", "msgqueue", key_from="auto"), huge))
    over = IpcPlan("room", "semaphore", key_from="auto", value=40000)
    with pytest.raises(IpcError, match=r"refuses semaphore room: its value 40000 is over SEMVMX"):
        create_all(make_plan(tmp_path, over))


def test_permission_refused_is_a_sentence(tmp_path: Path, no_leftovers: Leftovers) -> None:
    msgmnb = int(Path("/proc/sys/kernel/msgmnb").read_text())
    plan = make_plan(tmp_path, IpcPlan("s", "semaphore", key_from="auto"),
                     IpcPlan("jobs", "msgqueue", key_from="auto", max_bytes=msgmnb + 1))
    try:
        res = create_all(plan)
    except IpcError as exc:
        assert f"permission refused to set the byte limit of message queue jobs to {msgmnb + 1}"\
            in str(exc) and "CAP_SYS_RESOURCE" in str(exc)
    else:
        res.remove()
        pytest.skip("this process may raise a queue over msgmnb (it has CAP_SYS_RESOURCE)")


def test_permission_refused_at_creation_is_a_sentence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_leftovers: Leftovers) -> None:
    def refuse(*args: object) -> None:
        raise sysv_ipc.PermissionsError("Permission denied")

    monkeypatch.setattr(sysv_ipc, "SharedMemory", refuse)
    plan = make_plan(tmp_path, IpcPlan("q", "msgqueue", key_from="auto"),
                     IpcPlan("frame", "shm", key=free_key(), size=10))
    with pytest.raises(IpcError, match=r"^permission refused to create shared-memory segment "
                                       r"frame with key 0x[0-9a-f]+: Permission denied$"):
        create_all(plan)


def test_a_fifo_that_cannot_be_made_is_a_sentence(tmp_path: Path) -> None:
    (tmp_path / "fifo").write_text("a file where the folder should be")
    with pytest.raises(IpcError, match="cannot make fifo log at "):
        create_all(make_plan(tmp_path, all_kinds(tmp_path)[-1]))


def test_an_ftok_key_needs_an_existing_path(tmp_path: Path, no_leftovers: Leftovers) -> None:
    plan = make_plan(tmp_path, IpcPlan("q", "msgqueue", key_from=f"ftok:{tmp_path}/none:a"))
    with pytest.raises(IpcError, match=r"cannot make the key of IPC resource q from ftok:"):
        create_all(plan)
    plan = make_plan(tmp_path, IpcPlan("q", "msgqueue", key_from=f"ftok:{tmp_path}:a"))
    res = create_all(plan)
    try:
        assert res.records()[0]["key"] == sysv_ipc.ftok(str(tmp_path), ord("a"),
                                                        silence_warning=True)
    finally:
        res.remove()


# -- records: removal never touches what topo did not make ---------------------------------------


def test_remove_records_never_removes_a_foreign_object(
        tmp_path: Path, no_leftovers: Leftovers, foreign: list[Any]) -> None:
    stranger = sysv_ipc.Semaphore(free_key(), sysv_ipc.IPC_CREX, 0o600, 1)
    foreign.append(stranger)
    records = [
        # Our record, but the kernel gave the id to another key since.
        {"name": "room", "type": "semaphore", "key": stranger.key + 1, "id": stranger.id},
        # The right key, but another id: someone made a new object with our old key.
        {"name": "room", "type": "semaphore", "key": stranger.key, "id": stranger.id + 4096},
        {"name": "x", "type": "semaphore", "key": "1", "id": stranger.id},  # not topo's writing
        {"type": "msgqueue"}, "junk", None,
    ]
    said = remove_records(records)
    assert stranger.value == 1  # still there
    assert said[0].endswith(f"left alone id {stranger.id}, which now holds key {stranger.key:#x}")
    assert said[1].endswith("is already gone") and len(said) == 2
    assert remove_records(None) == [] and describe(None) == []


def test_describe_shows_live_state(tmp_path: Path, no_leftovers: Leftovers) -> None:
    res = create_all(make_plan(tmp_path, *all_kinds(tmp_path)))
    try:
        res.items["jobs"].obj.send(b"12345", type=1)
        res.items["jobs"].obj.send(b"678", type=1)
        res.items["frame"].obj.attach()
        by_name = {d["name"]: d for d in describe(res.records())}
        assert (by_name["jobs"]["messages"], by_name["jobs"]["bytes"],
                by_name["jobs"]["max_bytes"]) == (2, 8, 2048)
        assert (by_name["frame"]["size"], by_name["frame"]["attached"]) == (4096, 1)
        assert by_name["room"]["value"] == 3 and by_name["frame"]["mode"] == "0640"
        lines = {d["name"]: summary(d) for d in by_name.values()}
        assert lines["jobs"].endswith("mode 0600  2 messages, 8 of 2048 bytes queued")
        assert lines["frame"].endswith("4096 bytes, 1 attached")
        assert lines["room"].endswith("value 3") and "between a and b" in lines["pipe"]
        assert by_name["log"]["mode"] == "0620" and lines["log"].endswith("/fifo/log")
        res.items["frame"].obj.detach()
        records = res.records()
    finally:
        res.remove()
    assert summary(describe(records)[0]).endswith("gone")


def test_socketpair_ends_are_unix_stream_sockets(tmp_path: Path) -> None:
    res = create_all(make_plan(tmp_path, all_kinds(tmp_path)[3]))
    a, b = res.items["pipe"].ends.values()
    assert a.family == socket.AF_UNIX and a.type == socket.SOCK_STREAM
    assert not os.get_inheritable(a.fileno())  # only pass_fds makes it reach one exec'd child
    b.sendall(b"x")
    assert a.recv(1) == b"x"
    res.remove()
    assert a.fileno() == -1 and b.fileno() == -1
