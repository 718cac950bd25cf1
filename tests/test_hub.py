"""`icm-lite export --push-to-hub`: against a local stand-in for the Hub API (HF_ENDPOINT on 127.0.0.1), and every
way it refuses before any work. The dataset card (README.md) is written by every export."""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from icm_lite.cli import main
from icm_lite.tasks import Task

from conftest import one_error
from test_export import make_run


class StandIn(BaseHTTPRequestHandler):
    """The Hub endpoints huggingface_hub uses to check a token, create a dataset repo and commit files."""

    token_ok = True
    repos: dict = {}
    commits: list = []

    def _send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _url(self, path):
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def do_GET(self):
        if self.path.startswith("/api/whoami"):
            return self._send(200, {"name": "tester", "type": "user"}) if self.token_ok else self._send(401, {"error": "bad token"})
        self._send(404, {"error": "not here"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/api/repos/create":
            spec = json.loads(body)
            StandIn.repos[f"{spec['organization']}/{spec['name']}"] = spec
            return self._send(200, {"url": self._url(f"/datasets/{spec['organization']}/{spec['name']}")})
        if self.path.startswith("/api/validate-yaml"):
            return self._send(200, {"errors": [], "warnings": []})
        if "/preupload/" in self.path:
            files = json.loads(body)["files"]
            return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                              for f in files]})
        if "/commit/" in self.path:
            files = {}
            for line in body.decode().splitlines():
                op = json.loads(line)
                if op["key"] == "file":
                    files[op["value"]["path"]] = base64.b64decode(op["value"]["content"]).decode()
            StandIn.commits.append((self.path, files))
            return self._send(200, {"commitUrl": self._url(self.path.replace("/api", "")), "commitOid": "a" * 40,
                                    "pullRequestUrl": None})
        self._send(404, {"error": "not here"})

    def log_message(self, *a):
        pass


@pytest.fixture
def hub(monkeypatch):
    StandIn.token_ok, StandIn.repos, StandIn.commits = True, {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("HF_TOKEN", "hf_stand_in")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield StandIn
    server.shutdown()


@pytest.fixture
def run_dir(tmp_path):
    rows = [({"id": f"c{i}", "question": f"What is {i}?", "choice": f"It is {i}.", "label": i % 3 == 0,
              "consistency_id": i // 2}, i % 2 == 0) for i in range(10)]
    return make_run(tmp_path, rows, Task.builtin("claim"))


def export(run_dir, out, *extra):
    return CliRunner().invoke(main, ["export", str(run_dir), "--format", "prompt-completion", "--out", str(out), *extra])


def test_every_export_writes_a_dataset_card(run_dir, tmp_path):
    res = export(run_dir, tmp_path / "ft")
    assert res.exit_code == 0, res.output
    card = (tmp_path / "ft" / "README.md").read_text()
    assert card.startswith("---\nlicense: other\n") and "- split: train\n    path: train.jsonl" in card
    assert "| labels | 10 searched, 0 predicted from them, 0 pinned by a person; 5 True / 5 False |" in card
    assert "| model | smollm2" in card and "docs/faithfulness.md" in card and "its license applies" in card


def test_push_uploads_the_folder_in_one_commit(run_dir, tmp_path, hub):
    res = export(run_dir, tmp_path / "ft", "--push-to-hub", "tester/claims-icm", "--private")
    assert res.exit_code == 0, res.output
    assert "pushed to http://127.0.0.1:" in res.output and res.output.strip().endswith("/datasets/tester/claims-icm")
    assert hub.repos["tester/claims-icm"]["type"] == "dataset" and hub.repos["tester/claims-icm"]["visibility"] == "private"
    assert len(hub.commits) == 1
    path, files = hub.commits[0]
    assert path == "/api/datasets/tester/claims-icm/commit/main"
    local = {p.name: p.read_text() for p in (tmp_path / "ft").iterdir()}
    assert files == local and {"README.md", "icm_metadata.json", "train.jsonl"} <= set(files)


@pytest.mark.parametrize("case,says", [
    ("offline", "--push-to-hub: HF_HUB_OFFLINE is set"),
    ("no token", "--push-to-hub needs a Hugging Face token"),
    ("unreachable", "is not reachable from here: 127.0.0.1:9"),
    ("refused", "refused the token"),
    ("bad name", "--push-to-hub 'not a repo': write OWNER/NAME"),
])
def test_a_push_that_cannot_happen_fails_in_one_line_before_any_work(run_dir, tmp_path, hub, monkeypatch, case, says):
    repo = "tester/claims-icm"
    if case == "offline":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    elif case == "no token":
        monkeypatch.delenv("HF_TOKEN")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    elif case == "unreachable":
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    elif case == "refused":
        hub.token_ok = False
    else:
        repo = "not a repo"
    res = export(run_dir, tmp_path / "ft", "--push-to-hub", repo)
    assert says in one_error(res, 2)
    assert not (tmp_path / "ft").exists() and not hub.commits and not hub.repos  # nothing written, nothing pushed


def test_private_needs_a_push(run_dir, tmp_path):
    assert "--private goes with --push-to-hub" in one_error(export(run_dir, tmp_path / "ft", "--private"), 2)
