"""MLflowRest's download against an artifact proxy that lists a name that is not a file name: nothing is written
outside the destination (the files of a version are written where their listed names say)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from platform_core.services.mlflow_rest import MlflowRest

LISTINGS = {
    "1/m/artifacts": [{"path": "MLmodel", "is_dir": False}, {"path": "sub", "is_dir": True}],
    "1/m/artifacts/sub": [{"path": "weights.bin", "is_dir": False}],
    "1/evil/artifacts": [{"path": "..", "is_dir": True}],
}


class _Proxy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlparse(self.path)
        prefix = "/api/2.0/mlflow-artifacts/artifacts"
        if url.path == prefix:
            body = json.dumps({"files": LISTINGS[parse_qs(url.query)["path"][0]]}).encode()
        else:
            body = f"content of {url.path.removeprefix(prefix + '/')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def proxy() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_tree_downloads_with_its_subdirectories(proxy: str, tmp_path: Path) -> None:
    root = MlflowRest(proxy).download_tree("1/m/artifacts", tmp_path)
    assert (root / "MLmodel").read_text() == "content of 1/m/artifacts/MLmodel"
    assert (root / "sub" / "weights.bin").read_text() == "content of 1/m/artifacts/sub/weights.bin"


def test_a_listed_name_that_climbs_out_is_refused(proxy: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a file name"):
        MlflowRest(proxy).download_tree("1/evil/artifacts", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
