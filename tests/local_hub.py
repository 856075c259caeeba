"""A tiny in-process Hugging Face Hub for the push tests: the parts of the Hub HTTP API that `HfApi.create_repo`,
`create_branch`, `upload_folder` and card validation use, on 127.0.0.1 at a free port.

Files that arrive are kept in memory per repo and branch (`hub.files(repo_id)`), every request is logged
(`hub.requests`), unknown routes answer 404 and are listed in `hub.unknown`, and `hub.fail(route, status, times)`
makes the next calls of a route answer with an error (for the retry tests).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import yaml

TOKEN = "hf_localhubTESTtoken0123456789abcdef"
USER = "tester"


class LocalHub:
    def __init__(self, token: str = TOKEN, user: str = USER):
        self.token, self.user = token, user
        self.repos: dict[str, dict] = {}  # repo_id -> {"private": bool, "branches": {name: {path: bytes}}}
        self.validated: list[str] = []  # card texts sent to validate-yaml
        self.commits: list[dict] = []  # {"repo_id", "revision", "summary", "description", "paths"}
        self.requests: list[tuple[str, str]] = []
        self.unknown: list[tuple[str, str]] = []
        self._failures: dict[str, list[int]] = defaultdict(list)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- test controls ----------------------------------------------------------------------------------------------

    def fail(self, route: str, status: int, times: int = 1) -> None:
        """The next `times` calls of `route` (create, preupload, commit, branch, validate, repo_info, tree,
        whoami) answer `status`."""
        self._failures[route].extend([status] * times)

    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo_id]["branches"][branch])

    def count(self, route: str) -> int:
        return sum(1 for _, r in self.requests if r == route)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- routes -------------------------------------------------------------------------------------------------

    def route(self, method: str, path: str) -> tuple[str, dict]:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if method == "GET" and parts == ["api", "whoami-v2"]:
            return "whoami", {}
        if method == "POST" and parts == ["api", "repos", "create"]:
            return "create", {}
        if method == "POST" and parts == ["api", "validate-yaml"]:
            return "validate", {}
        if len(parts) >= 4 and parts[:2] == ["api", "models"]:
            repo_id = "/".join(parts[2:4])
            rest = parts[4:]
            if method == "POST" and len(rest) == 2 and rest[0] in ("preupload", "commit", "branch"):
                return rest[0], {"repo_id": repo_id, "revision": rest[1]}
            if method == "GET" and len(rest) >= 2 and rest[0] == "tree":  # list_repo_files (a push's deletions)
                return "tree", {"repo_id": repo_id, "revision": rest[1]}
            if method == "GET" and (not rest or rest[0] == "revision"):
                return "repo_info", {"repo_id": repo_id, "revision": rest[1] if len(rest) > 1 else "main"}
        return "unknown", {}


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        hub = self.hub
        path = urlparse(self.path).path
        body = self._body()
        route, args = hub.route(method, path)
        with hub._lock:
            hub.requests.append((method, route))
            if route == "unknown":
                hub.unknown.append((method, self.path))
            failure = hub._failures[route].pop(0) if hub._failures[route] else None
        if route == "unknown":
            return self._send(404, {"error": f"local hub: no route for {method} {self.path}"})
        if failure:
            return self._send(failure, {"error": f"local hub: injected {failure}"})
        if route != "validate" and self.headers.get("Authorization") != f"Bearer {hub.token}":
            return self._send(401, {"error": "Invalid credentials in Authorization header"})
        handler = getattr(self, f"_{route}")
        with hub._lock:
            handler(body, **args)

    def _whoami(self, body) -> None:
        self._send(200, {"type": "user", "name": self.hub.user, "auth": {"type": "access_token"}})

    def _create(self, body) -> None:
        payload = json.loads(body)
        repo_id = f"{payload.get('organization') or self.hub.user}/{payload['name']}"
        url = f"{self.hub.url}/{repo_id}"
        if repo_id in self.hub.repos:
            return self._send(409, {"error": "You already created this model repo", "url": url})
        private = payload.get("private", payload.get("visibility") == "private")
        self.hub.repos[repo_id] = {"private": bool(private), "branches": {"main": {}}}
        self._send(200, {"url": url, "name": repo_id})

    def _repo(self, repo_id: str) -> dict | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self.send_response(404)
            data = json.dumps({"error": "Repository not found"}).encode()
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        return repo

    def _repo_info(self, body, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        files = repo["branches"].get(revision, {})
        sha = hashlib.sha1(repr(sorted(files)).encode()).hexdigest()
        siblings = [{"rfilename": p} for p in sorted(files)]
        self._send(200, {"id": repo_id, "sha": sha, "private": repo["private"], "siblings": siblings})

    def _tree(self, body, repo_id: str, revision: str) -> None:
        """Every file of the branch, as the Hub's recursive tree listing gives them (one page)."""
        repo = self._repo(repo_id)
        if repo is None:
            return
        files = repo["branches"].get(revision, {})
        entries = [{"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                   for path, data in sorted(files.items())]  # fmt: skip
        self._send(200, entries)

    def _branch(self, body, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        if revision in repo["branches"]:
            return self._send(409, {"error": f"Reference already exists: refs/heads/{revision}"})
        repo["branches"][revision] = dict(repo["branches"]["main"])
        self._send(200, {})

    def _preupload(self, body, repo_id: str, revision: str) -> None:
        if self._repo(repo_id) is None:
            return
        files = json.loads(body)["files"]
        answer = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
        self._send(200, {"files": answer, "commitOid": None})

    def _commit(self, body, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        if revision not in repo["branches"]:
            return self._send(404, {"error": f"Invalid rev id: {revision}"})
        header, paths = {}, []
        for line in body.splitlines():
            item = json.loads(line)
            if item["key"] == "header":
                header = item["value"]
            elif item["key"] == "file":
                value = item["value"]
                content = value["content"]
                data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                repo["branches"][revision][value["path"]] = data
                paths.append(value["path"])
            elif item["key"] == "deletedFile":
                repo["branches"][revision].pop(item["value"]["path"], None)
            else:
                return self._send(400, {"error": f"local hub: unsupported commit item {item['key']!r}"})
        oid = hashlib.sha1(repr((repo_id, revision, len(self.hub.commits))).encode()).hexdigest()
        self.hub.commits.append(
            {
                "repo_id": repo_id,
                "revision": revision,
                "summary": header.get("summary"),
                "description": header.get("description"),
                "paths": paths,
            }
        )
        self._send(200, {"commitUrl": f"{self.hub.url}/{repo_id}/commit/{oid}", "commitOid": oid, "success": True})

    def _validate(self, body) -> None:
        """As the Hub does: the YAML header must parse, and a model-index entry needs a name and results with a
        task and metrics. Errors and warnings come back as JSON lists."""
        content = json.loads(body)["content"]
        errors = []
        if content.startswith("---"):
            try:
                metadata = yaml.safe_load(content.split("---")[1]) or {}
            except yaml.YAMLError as err:
                metadata, errors = {}, [f"Invalid YAML: {err}"]
            for entry in metadata.get("model-index") or []:
                if not entry.get("name") or not isinstance(entry.get("results"), list):
                    errors.append('"model-index[0].name" and "results" are required')
                    continue
                for result in entry["results"]:
                    if "task" not in result or not result.get("metrics"):
                        errors.append('"model-index[0].results[0]" needs a task and metrics')
        self.hub.validated.append(content)
        body = {"errors": [{"message": e} for e in errors], "warnings": []}
        self._send(400 if errors else 200, body)
