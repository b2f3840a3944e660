"""Host lists: -H and hostfile parsing, validation, rank placement."""

import pytest
from distgrad.launcher import LaunchError
from distgrad.launcher.hosts import (
    Host,
    parse_host_list,
    parse_hostfile,
    parse_hostfile_text,
    place_ranks,
)


def test_host_list_with_and_without_slots():
    assert parse_host_list("n1:4,n2,10.0.0.3:2") == [
        Host("n1", 4),
        Host("n2", 1),
        Host("10.0.0.3", 2),
    ]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("n1:0", "-H 'n1:0': slots must be a whole number >= 1, got '0'"),
        ("n1:x", "-H 'n1:x': slots must be a whole number >= 1, got 'x'"),
        ("n1,,n2", "-H 'n1,,n2': empty host name (stray comma?)"),
        (
            "n1,n1:2",
            "-H 'n1,n1:2': host 'n1' is listed twice; list it once with the total "
            "number of slots (e.g. n1:2)",
        ),
        (
            "n 1",
            "-H 'n 1': 'n 1' is not a host name, IPv4 address or IPv6 address "
            "(write IPv6 with slots as [addr]:N)",
        ),
    ],
)
def test_host_list_errors(spec, message):
    with pytest.raises(LaunchError) as error:
        parse_host_list(spec)
    assert str(error.value) == message


def test_hostfile_both_formats_and_comments():
    text = """\
# cluster A
node1 slots=4      # Open MPI style
node2:2            # MPICH style

node3
  node4   slots=8
"""
    assert parse_hostfile_text(text) == [
        Host("node1", 4),
        Host("node2", 2),
        Host("node3", 1),
        Host("node4", 8),
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "n1 slots=4 max_slots=2\n",
            "hosts.txt line 1 ('n1 slots=4 max_slots=2'): max_slots=2 is less than slots=4",
        ),
        (
            "n1\nn2:2 slots=2\n",
            "hosts.txt line 2 ('n2:2 slots=2'): unexpected 'slots=2'; "
            "write 'host', 'host:N' or 'host slots=N [max_slots=M]'",
        ),
        (
            "n1 slots=-1\n",
            "hosts.txt line 1 ('n1 slots=-1'): slots must be a whole number >= 1, got '-1'",
        ),
        ("# nothing\n\n", "hosts.txt: no hosts in it (only blank lines or comments)"),
        (
            "n1\nn1 slots=2\n",
            "hosts.txt: host 'n1' is listed twice; list it once with the total "
            "number of slots (e.g. n1:2)",
        ),
    ],
)
def test_hostfile_errors(text, message):
    with pytest.raises(LaunchError) as error:
        parse_hostfile_text(text, source="hosts.txt")
    assert str(error.value) == message


def test_hostfile_read_from_disk(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("a slots=2\nb:3\n")
    assert parse_hostfile(str(path)) == [Host("a", 2), Host("b", 3)]
    with pytest.raises(LaunchError, match=r"cannot read hostfile '.*/missing': No such file"):
        parse_hostfile(str(tmp_path / "missing"))


def test_ranks_fill_hosts_in_order():
    hosts = [Host("a", 2), Host("b", 2)]
    assert place_ranks(hosts, 3, oversubscribe=False) == ["a", "a", "b"]
    assert place_ranks(hosts, 6, oversubscribe=True) == ["a", "a", "b", "b", "a", "a"]


def test_too_many_ranks_names_slots_and_suggests_oversubscribe():
    with pytest.raises(LaunchError) as error:
        place_ranks([Host("a", 2), Host("b", 2)], 5, oversubscribe=False)
    assert str(error.value) == (
        "-np 5 is more than the 4 slots available (a: 2, b: 2). Lower -np, give hosts more "
        "slots (-H host:N or 'host slots=N' in the hostfile), or pass --oversubscribe to run "
        "more ranks than slots."
    )


def test_max_slots_and_ipv6_hosts():
    hosts = parse_hostfile_text("n1 slots=2 max_slots=3\nfe80::2 slots=4\n[::1]:2\n")
    assert hosts == [Host("n1", 2, 3), Host("fe80::2", 4), Host("::1", 2)]
    assert [h.spec for h in hosts] == ["n1:2", "[fe80::2]:4", "[::1]:2"]
    assert parse_host_list("[fe80::1]:4,node2,::1") == [
        Host("fe80::1", 4),
        Host("node2", 1),
        Host("::1", 1),
    ]
    assert place_ranks(hosts, 9, oversubscribe=True).count("n1") == 3
    with pytest.raises(LaunchError, match="more than its max_slots=3"):
        place_ranks(hosts, 11, oversubscribe=True)
