"""Explicit test lists: refstack-client's format read, and matched against a Tempest list."""

from __future__ import annotations

from farm_worker.matching import match
from farm_worker.protocol import Wanted, read_lines, wanted_tests

ID_A = "id-6f8e4436-fc96-4282-8122-e41df57197a9"
ID_B = "id-9a438d88-10c6-4bcd-8b5b-5b6e25e1346f"
# as RefStack's GET /v1/guidelines/<v>/tests?alias=true writes it: aliases as extra lines
REFSTACK_LIST = f"""
# a comment, then the tests
tempest.api.identity.v3.test_tokens.TokensV3Test.test_create_token[{ID_A}]
tempest.api.compute.servers.test_create_server.ServersTestJSON.test_list_servers[{ID_B}]
tempest.api.compute.servers.test_create_server.ServersTestManualDisk.test_list_servers[{ID_B}]
tempest.api.identity.v3.test_tokens.TokensV3Test.test_create_token[{ID_A}]
tempest.api.object_storage.test_x.ObjTest.test_y
"""


def test_lines_sharing_an_id_are_one_test_with_its_aliases() -> None:
    assert wanted_tests(read_lines(REFSTACK_LIST)) == [
        Wanted("tempest.api.identity.v3.test_tokens.TokensV3Test.test_create_token",
               ID_A[3:]),
        Wanted("tempest.api.compute.servers.test_create_server.ServersTestJSON."
               "test_list_servers", ID_B[3:],
               ("tempest.api.compute.servers.test_create_server.ServersTestManualDisk."
                "test_list_servers",)),
        Wanted("tempest.api.object_storage.test_x.ObjTest.test_y"),
    ]


UUID = "0f6e1a2b-0000-4000-8000-00000000000a"
AVAILABLE = [
    f"pkg.api.test_new.Base.test_go[id-{UUID},smoke]",
    f"pkg.api.test_new.Child.test_go[id-{UUID},smoke]",
    f"pkg.api.test_moved.Other.test_go[id-{UUID}]",
    "pkg.api.test_plain.Plain.test_one[id-11111111-2222-4333-8444-555555555555]",
    "pkg.api.test_plain.Plain.test_two",
]


def test_name_then_alias_then_id_and_one_test_for_an_inherited_id() -> None:
    m = match([
        Wanted("pkg.api.test_plain.Plain.test_one"),  # by name, attributes ignored
        Wanted("pkg.api.old.Plain.test_two", None, ("pkg.gone.X.test_two",
                                                    "pkg.api.test_plain.Plain.test_two")),
        Wanted("pkg.api.test_old.Child.test_go", UUID),  # moved: same class and method
        Wanted("pkg.api.test_old.Renamed.test_went", UUID.upper()),  # renamed: closest path
        Wanted("pkg.api.test_gone.Gone.test_gone", "99999999-2222-4333-8444-555555555555"),
    ], AVAILABLE)
    assert [(x.test, x.how) for x in m.matches] == [
        ("pkg.api.test_plain.Plain.test_one[id-11111111-2222-4333-8444-555555555555]", "name"),
        ("pkg.api.test_plain.Plain.test_two", "alias"),
        (f"pkg.api.test_new.Child.test_go[id-{UUID},smoke]", "id"),
        (f"pkg.api.test_moved.Other.test_go[id-{UUID}]", "id"),
    ]
    assert [w.name for w in m.not_found] == ["pkg.api.test_gone.Gone.test_gone"]
    report = m.to_dict()
    assert report["listed"] == 5 and report["matched"] == 4
    assert (report["by_name"], report["by_alias"], report["by_id"]) == (1, 1, 2)
    assert report["not_found"] == ["pkg.api.test_gone.Gone.test_gone"]
    assert report["renamed"][0] == {"listed": "pkg.api.old.Plain.test_two",
                                    "ran": "pkg.api.test_plain.Plain.test_two", "by": "alias"}
    assert m.describe() == ("of 5 listed: 1 by name, 1 by alias, 2 by id, 1 not found "
                            "(pkg.api.test_gone.Gone.test_gone)")


def test_two_listed_tests_reaching_one_tempest_test_run_it_once() -> None:
    m = match([Wanted("pkg.api.test_new.Child.test_go"),
               Wanted("pkg.api.other.Child.test_go", UUID)], AVAILABLE)
    assert len(m.matches) == 2
    assert m.tests == [f"pkg.api.test_new.Child.test_go[id-{UUID},smoke]"]
