"""One Lambda execution environment as a local process, for LocalStack without Docker.

Started by the LocalStack executor plugin (localstack_plugins.py) on the Python the function's
runtime names; standard library only, as it runs outside every venv of ours. It speaks LocalStack's
executor protocol, the part its Docker images' init speaks: it reports ready (or the import error)
to LocalStack, takes invocations on 127.0.0.1:<port>/invoke, runs the handler with the function's
environment, and posts its logs and its result or error back. It enforces the function's timeout
and memory as Lambda does: past the timeout it reports `Sandbox.Timedout` and the environment
ends; a handler that exhausts its memory is reported `Runtime.OutOfMemory` and the environment ends.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import resource
import sys
import threading
import time
import traceback
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ENDPOINT = os.environ.get("LOCALSTACK_RUNTIME_ENDPOINT", "")
RUNTIME_ID = os.environ.get("LOCALSTACK_RUNTIME_ID", "")
# Address space beyond the function's memory that the interpreter and its threads need to start.
INTERPRETER_HEADROOM_MB = 512
EXIT_TIMED_OUT = 3
EXIT_OUT_OF_MEMORY = 4


def post(path: str, body: dict[str, Any] | bytes) -> None:
    """POST to LocalStack's endpoint for this environment."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{ENDPOINT}{path}", data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


class Context:
    """The handler's context object, as Lambda's Python runtime gives it."""

    def __init__(self, invoke: dict[str, Any], deadline_s: float) -> None:
        self.aws_request_id = invoke["invoke-id"]
        self.invoked_function_arn = invoke.get("invoked-function-arn", "")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self._deadline_s = deadline_s

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline_s - time.time()) * 1000), 0)


def error(kind: str, message: str, stack: list[str] | None = None) -> dict[str, Any]:
    return {"errorType": kind, "errorMessage": message, "stackTrace": stack or []}


class Environment:
    """The handler, run one invocation at a time, each within the function's timeout."""

    def __init__(self, handler: Any, timeout_s: float) -> None:
        self.handler = handler
        self.timeout_s = timeout_s
        self.lock = threading.Lock()

    def invoke(self, invoke: dict[str, Any]) -> None:
        with self.lock:
            request_id = invoke["invoke-id"]
            started = time.time()
            logs = io.StringIO()
            done = threading.Event()
            watchdog = threading.Thread(target=self._time_out, args=(request_id, started, logs, done), daemon=True)
            watchdog.start()
            outcome, body = "response", b"null"
            with contextlib.redirect_stdout(logs), contextlib.redirect_stderr(logs):
                print(f"START RequestId: {request_id} Version: $LATEST")
                try:
                    result = self.handler(
                        json.loads(invoke.get("payload") or "null"), Context(invoke, started + self.timeout_s)
                    )
                    body = json.dumps(result).encode()
                except MemoryError:
                    done.set()
                    self._finish(
                        request_id,
                        started,
                        logs,
                        "error",
                        error("Runtime.OutOfMemory", "Runtime exited: out of memory"),
                    )
                    os._exit(EXIT_OUT_OF_MEMORY)
                except Exception as exc:  # the handler's own error: Lambda reports it, the environment lives on
                    traceback.print_exc()
                    outcome = "error"
                    body = json.dumps(
                        error(type(exc).__name__, str(exc), traceback.format_tb(exc.__traceback__))
                    ).encode()
            done.set()
            self._finish(request_id, started, logs, outcome, body)

    def _time_out(self, request_id: str, started: float, logs: io.StringIO, done: threading.Event) -> None:
        if done.wait(self.timeout_s):
            return
        message = f"Task timed out after {self.timeout_s:.2f} seconds"
        logs.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {request_id} {message}\n")
        self._finish(request_id, started, logs, "error", error("Sandbox.Timedout", message))
        os._exit(EXIT_TIMED_OUT)  # the handler may still run: the environment goes, as on Lambda

    @staticmethod
    def _finish(request_id: str, started: float, logs: io.StringIO, outcome: str, body: dict[str, Any] | bytes) -> None:
        logs.write(f"END RequestId: {request_id}\n")
        logs.write(f"REPORT RequestId: {request_id}\tDuration: {(time.time() - started) * 1000:.2f} ms\n")
        post(f"/invocations/{request_id}/logs", {"logs": logs.getvalue()})
        post(f"/invocations/{request_id}/{outcome}", body)


def main() -> None:
    task_root, port = sys.argv[1], int(sys.argv[2])
    memory_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
    limit = (memory_mb + INTERPRETER_HEADROOM_MB) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.path.insert(0, task_root)
    os.chdir(task_root)
    module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as exc:  # what Lambda calls Runtime.ImportModuleError: the environment fails to start
        post(f"/status/{RUNTIME_ID}/error", error("Runtime.ImportModuleError", f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from exc
    environment = Environment(handler, float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "3")))

    class Invocations(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            invoke = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(200)
            self.end_headers()
            threading.Thread(target=environment.invoke, args=(invoke,), daemon=True).start()

        def log_message(self, format: str, *args: Any) -> None:
            """Requests are not logged: the function's own output is its log."""

    server = ThreadingHTTPServer(("127.0.0.1", port), Invocations)
    post(f"/status/{RUNTIME_ID}/ready", {})
    server.serve_forever()


if __name__ == "__main__":
    main()
