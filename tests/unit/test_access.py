"""Tenants and groups (issue 31 items 3, 4): the store's restriction, ids and hashes, the API's groups field
and 403, the principal handed from each route to the service, and the CLI flags. Milvus itself is in
tests/integration/test_access.py."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ragserve.cli import CliError, access_of, build_parser, groups_of
from ragserve.config import IngestConfig, load_config
from ragserve.ingest.prepare import chunk_id, document_hash
from ragserve.router.api import create_api
from ragserve.router.auth import ANONYMOUS, Principal, digest, load_keys_file
from ragserve.router.guard import GuardSettings
from ragserve.router.models import ChatRequest, DocumentsRequest, QueryRequest
from ragserve.router.service import ApiError, RagService
from ragserve.store.filters import (
    DEFAULT_ACCESS,
    MAX_GROUP_KEYS_BYTES,
    MAX_GROUPS,
    Access,
    Filter,
    check_groups,
    check_tenant,
    compile_filter,
    group_keys,
    restricted,
)

HR = Access("acme", frozenset({"hr"}))


def test_every_expression_is_the_callers_restriction_and_then_the_filter() -> None:
    assert restricted(DEFAULT_ACCESS) == '(tenant == "default")'
    where = compile_filter(Filter(('x" or tenant != "',)))  # quoted: cannot close the literal
    assert restricted(HR, where) == (
        '(tenant == "acme" and (group_keys == "" or group_keys like "%|6872|%")) '
        'and ((source in ["x\\" or tenant != \\""]))'
    )
    assert restricted(Access("acme", frozenset())) == '(tenant == "acme" and (group_keys == ""))'
    # A collection without the keys (a 2.3 server's) matches the groups array.
    assert restricted(HR, keys=False) == (
        '(tenant == "acme" and (array_length(groups) == 0 or array_contains_any(groups, ["hr"])))'
    )
    assert restricted(Access("acme", frozenset()), keys=False) == (
        '(tenant == "acme" and (array_length(groups) == 0))'
    )


def test_group_keys_let_a_group_match_only_itself() -> None:
    """Each group is hex between bars: no name is a LIKE wildcard, a quote, a bar or a prefix of another
    in the stored string. Checked with LIKE's semantics (``%`` any run of characters, ``_`` any one)."""

    def like(pattern: str, value: str) -> bool:
        regex = "".join({"%": ".*", "_": "."}.get(c, re.escape(c)) for c in pattern)
        return re.fullmatch(regex, value, re.DOTALL) is not None

    names = ["hr", "h", "r", "h%", "%", "_", "|", "hr|eng", 'a"b', "a\\b", "é", "eng"]
    for stored in itertools.chain([()], itertools.combinations(names, 1), itertools.combinations(names, 2)):
        keys = group_keys(check_groups(stored))
        for asked in names:
            assert like("%" + group_keys([asked]) + "%", keys) == (asked in stored), (stored, asked)
    assert group_keys(()) == ""
    assert len(group_keys(["\U0010ffff" * 32] * MAX_GROUPS)) <= MAX_GROUP_KEYS_BYTES  # 128 bytes each


def test_tenants_and_groups_are_checked_and_groups_sorted() -> None:
    assert check_groups(["ops", "hr", "ops"]) == ("hr", "ops")
    with pytest.raises(ValueError, match="groups: at most 64"):
        check_groups([f"g{i}" for i in range(MAX_GROUPS + 1)])
    for bad in ("", "x" * 129, "a\nb"):
        with pytest.raises(ValueError, match="groups: a group is"):
            check_groups([bad])
        with pytest.raises(ValueError, match="tenant: a tenant is"):
            check_tenant(bad)


def test_chunk_ids_differ_across_tenants_and_the_groups_are_part_of_the_hash() -> None:
    assert chunk_id("a.md", "h", 0) == chunk_id("a.md", "h", 0, "default")  # unchanged (test_ingest_plan)
    assert len({chunk_id("a.md", "h", 0, t) for t in ("default", "acme", "globex")}) == 3
    cfg = IngestConfig()
    plain = document_hash("text", "title", cfg)
    assert plain == document_hash("text", "title", cfg, ())  # no groups: the hash from before groups
    assert document_hash("text", "title", cfg, ("hr",)) not in (plain, document_hash("t", "title", cfg))
    assert document_hash("text", "title", cfg, ("hr", "eng")) == document_hash(
        "text", "title", cfg, ("eng", "hr")
    )


class Ingestor:
    def __init__(self) -> None:
        self.calls: list[tuple[list[Any], Access]] = []

    def ingest_texts(self, docs: Any, access: Access) -> Any:
        from ragserve.ingest.plan import IngestReport

        self.calls.append((list(docs), access))
        return IngestReport(files=len(docs))


def documents(*groups: list[str] | None) -> DocumentsRequest:
    docs = [
        {"source": f"{i}.md", "text": "x", **({"groups": g} if g is not None else {})}
        for i, g in enumerate(groups)
    ]
    return DocumentsRequest.model_validate({"documents": docs})


def test_documents_take_groups_among_the_callers_own_into_its_tenant() -> None:
    cfg = load_config()
    ingestor = Ingestor()
    pipeline = SimpleNamespace(retriever=SimpleNamespace(store=None), generator=None)
    service = RagService(cfg, pipeline, ingestor)  # type: ignore[arg-type]
    hr_writer = Principal("w", "acme", frozenset({"hr", "ops"}))

    asyncio.run(service.add_documents(documents(["hr"], None, []), hr_writer))
    docs, access = ingestor.calls[-1]
    assert access == Access("acme", frozenset({"hr", "ops"}))
    assert [d.groups for d in docs] == [("hr",), (), ()]

    with pytest.raises(ApiError) as refused:
        asyncio.run(service.add_documents(documents(["hr"], ["ops", "eng"]), hr_writer))
    assert (refused.value.status, refused.value.field) == (403, "documents.1.groups")
    assert "'eng'" in refused.value.message and len(ingestor.calls) == 1  # nothing written

    operator = Principal("op", "default", None)  # every group: may set any
    asyncio.run(service.add_documents(documents(["finance"]), operator))
    assert ingestor.calls[-1][1] == DEFAULT_ACCESS and ingestor.calls[-1][0][0].groups == ("finance",)


def test_a_documents_groups_field_is_validated() -> None:
    with pytest.raises(ValueError, match="at most 64"):
        documents([f"g{i}" for i in range(MAX_GROUPS + 1)])
    with pytest.raises(ValueError, match="a group is"):
        documents([""])


def test_query_and_chat_requests_carry_the_callers_access() -> None:
    cfg = load_config()
    generator = SimpleNamespace(model_name="m")
    pipeline = SimpleNamespace(retriever=SimpleNamespace(store=None), generator=generator)
    service = RagService(cfg, pipeline, Ingestor())  # type: ignore[arg-type]
    assert service._query_request(QueryRequest(question="q"), HR).access == HR
    chat = ChatRequest.model_validate({"messages": [{"role": "user", "content": "q"}]})
    assert service._chat_request(chat, HR).access == HR


class Recorder:
    """The service side of the routes: records the access each call came with."""

    def __init__(self) -> None:
        self.seen: dict[str, Access] = {}

    async def search(self, body: Any, principal: Principal) -> dict[str, Any]:
        self.seen["search"] = principal.access
        return {"hits": [], "timings": {}}

    async def chat(self, body: Any, principal: Principal) -> dict[str, Any]:
        self.seen["chat"] = principal.access
        return {}

    async def query_events(self, body: Any, principal: Principal) -> Any:
        self.seen["query"] = principal.access

        async def events() -> Any:
            yield "data: [DONE]\n\n"

        return events()

    async def stats(self, principal: Principal) -> dict[str, Any]:
        self.seen["stats"] = principal.access
        return {"chunks": 0}

    async def delete_document(self, source: str, principal: Principal) -> dict[str, Any]:
        self.seen["delete"] = principal.access
        return {"source": source}


def test_every_route_hands_the_callers_access_to_the_service(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    entry = {"name": "hr", "key_sha256": digest("k"), "tenant": "acme", "groups": ["hr"]}
    path.write_text(json.dumps([{**entry, "scopes": ["read", "write", "admin"]}]))
    service = Recorder()
    settings = GuardSettings.build([], [], None, 1 << 20, load_keys_file(path))
    api = TestClient(create_api(service, settings, 5.0, lambda: ""))  # type: ignore[arg-type]
    key = {"Authorization": "Bearer k"}
    assert api.post("/v1/search", json={"query": "q"}, headers=key).status_code == 200
    assert api.post("/v1/query", json={"question": "q", "stream": True}, headers=key).status_code == 200
    chat = {"messages": [{"role": "user", "content": "q"}]}
    assert api.post("/v1/chat/completions", json=chat, headers=key).status_code == 200
    assert api.get("/v1/collections/stats", headers=key).status_code == 200
    assert api.delete("/v1/documents/a.md", headers=key).status_code == 200
    assert service.seen == {k: HR for k in ("search", "query", "chat", "stats", "delete")}


def test_without_authentication_everything_is_the_default_tenants() -> None:
    assert ANONYMOUS.access == DEFAULT_ACCESS


def test_the_cli_takes_a_tenant_and_groups() -> None:
    parser = build_parser()
    args = parser.parse_args(["ingest", "docs", "--tenant", "acme", "--groups", "hr, eng,,hr"])
    assert (access_of(args), groups_of(args)) == (Access("acme"), ("eng", "hr"))
    for command in (["search", "q"], ["query", "q"], ["eval", "f.jsonl"], ["stats"]):
        assert access_of(parser.parse_args([*command, "--tenant", "acme"])) == Access("acme")
        assert access_of(parser.parse_args(command)) == DEFAULT_ACCESS
    with pytest.raises(CliError, match="--tenant"):
        access_of(parser.parse_args(["stats", "--tenant", ""]))
    with pytest.raises(CliError, match="--groups"):
        groups_of(parser.parse_args(["ingest", "d", "--groups", ",".join(f"g{i}" for i in range(65))]))
