"""The web playground (/ui): served outside the guard with a strict CSP, off unless router.ui is set."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from ragserve.config import load_config
from ragserve.router.api import create_api
from ragserve.router.guard import GuardSettings, digest
from ragserve.router.ui import CSP, FILES

UI_DIR = Path(__file__).parents[2] / "services/ragserve/router/ui"


class ModelsOnly:
    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "x"}]}


def build(ui: bool, keys: tuple[str, ...] = ()) -> TestClient:
    guard = GuardSettings(key_digests=[digest(k) for k in keys])
    return TestClient(create_api(ModelsOnly(), guard, 5.0, lambda: "", ui=ui))  # type: ignore[arg-type]


def test_files_served_with_their_types_and_the_csp() -> None:
    client = build(ui=True)
    for path, kind in (
        ("/ui/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ):
        res = client.get(path)
        assert res.status_code == 200, path
        assert res.headers["content-type"].startswith(kind), path
        assert res.headers["content-security-policy"] == CSP
        assert res.headers["x-content-type-options"] == "nosniff"
    assert client.get("/ui/index.html").text == client.get("/ui/").text
    assert client.head("/ui/app.js").content == b""


def test_csp_allows_only_the_pages_own_files() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval', no other origin
    assert all("unsafe" not in v and "http" not in v and "*" not in v for v in directives.values())
    assert directives["frame-ancestors"] == "'none'"


def test_page_has_no_inline_script_or_style_and_stores_no_key() -> None:
    html = (UI_DIR / "index.html").read_text()
    assert re.findall(r"<script[^>]*>", html) == ['<script src="app.js" defer>']
    assert "<style" not in html and " style=" not in html and not re.search(r"\son\w+=", html)
    assert "http://" not in html and "https://" not in html  # nothing fetched from elsewhere
    js = (UI_DIR / "app.js").read_text()
    for forbidden in ("localStorage", "sessionStorage", "document.cookie", "indexedDB", "innerHTML"):
        assert forbidden not in js, forbidden
    assert not re.search(r"\beval\(|new Function", js)


def test_redirect_unknown_files_and_methods() -> None:
    client = build(ui=True)
    res = client.get("/ui", follow_redirects=False)
    assert res.status_code == 308 and res.headers["location"] == "ui/"  # relative: any route prefix
    assert client.get("/ui/../v1/models").status_code in (200, 404)  # never a file outside the three
    assert client.get("/ui/secret.txt").status_code == 404
    assert client.get("/ui/%2e%2e/pyproject.toml").status_code == 404
    assert client.post("/ui/").status_code == 405


def test_page_loads_without_a_key_but_the_api_still_needs_one() -> None:
    client = build(ui=True, keys=("k1",))
    assert client.get("/ui/").status_code == 200
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer k1"}).status_code == 200


def test_off_when_disabled() -> None:
    assert build(ui=False).get("/ui/").status_code == 404
    assert build(ui=False, keys=("k1",)).get("/ui/").status_code == 401  # the guard answers: no page here


def test_on_in_the_local_profile_off_in_production() -> None:
    assert load_config(env={}).router.ui is True
    prod = load_config(env={"RAGSERVE_PROFILE": "production", "RAGSERVE__STORE__URI": "http://m:19530"})
    assert prod.router.ui is False


def test_the_files_ship_in_the_package() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["ragserve"]
    assert "router/ui/*" in patterns
    assert {p.name for p in UI_DIR.iterdir()} == set(FILES)
