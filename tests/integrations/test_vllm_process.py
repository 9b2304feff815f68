"""``VLLMServer`` stops the whole process group it started: vLLM runs its engine core in a
child process, which stopping the server alone can leave running. A stand-in server (a
Python process that answers ``/health`` and starts a child that ignores SIGTERM, as vLLM's
engine core may) checks our process handling without vLLM itself."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from integrations.vllm_cpu import VLLMServer

STAND_IN = """
import http.server, subprocess, sys
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
open(sys.argv[2], "w").write(str(child.pid))

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


class StandIn(VLLMServer):
    def __init__(self, pid_file: Path) -> None:
        super().__init__(Path("unused"), python=Path(sys.executable), startup_timeout=30)
        self.pid_file = pid_file

    def command(self, python: Path) -> list[str]:
        return [str(python), "-c", STAND_IN, str(self.port), str(self.pid_file)]


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


def test_stopping_the_server_stops_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    with StandIn(pid_file):
        child = int(pid_file.read_text())
        assert _running(child)
    deadline = time.monotonic() + 10
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _running(child):  # pragma: no cover - what the test guards against
        os.kill(child, 9)
        raise AssertionError("the server's child outlived it")
