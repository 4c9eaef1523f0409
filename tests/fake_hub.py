"""A minimal stand-in for the Hugging Face Hub's upload API, on 127.0.0.1, for the push tests.

It answers the three calls `HfApi.create_repo` and `HfApi.upload_folder` make for small
files (create, preupload, commit), keeps what was committed, and records every request's
headers so a test can check where the token went.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self) -> None:
        self.files: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.reject = False  # answer 401 to everything, as the Hub does for a bad token
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                hub.requests.append(("GET", self.path, dict(self.headers)))
                self._reply(404, {"error": "not here"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hub.requests.append(("POST", self.path, dict(self.headers)))
                if hub.reject:
                    return self._reply(401, {"error": "Invalid credentials in Authorization header"})
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    repo = json.loads(body)
                    name = f"{repo.get('organization') or 'user'}/{repo['name']}"
                    hub.files.setdefault(name, {})
                    return self._reply(200, {"url": f"http://{self.headers['Host']}/{name}", "name": name})
                if path == "/api/validate-yaml":  # the model card's metadata
                    return self._reply(200, {"errors": [], "warnings": []})
                if "/preupload/" in path:
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                        "shouldIgnore": False} for f in files]})
                if "/commit/" in path:
                    repo = path.split("/api/models/")[1].split("/commit/")[0]
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            hub.files.setdefault(repo, {})[item["value"]["path"]] = base64.b64decode(
                                item["value"]["content"])
                    return self._reply(200, {"commitUrl": f"http://{self.headers['Host']}/{repo}/commit/1",
                                             "commitOid": "1" * 40})
                self._reply(404, {"error": f"no route {path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
