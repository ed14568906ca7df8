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
EXIT_ORPHANED = 5
EXIT_NO_THREAD = 6
PARENT_POLL_S = 1.0


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


class Capture(io.TextIOBase):
    """The process's stdout and stderr: an invocation's log while it runs, the worker's own output
    otherwise. Put in place before the handler is imported, so a logger that keeps the stream it
    found at import (Powertools' does) writes into the invocation's log too."""

    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback
        self.target: io.StringIO | None = None

    def write(self, text: str) -> int:
        (self.target or self.fallback).write(text)
        return len(text)

    def flush(self) -> None:
        (self.target or self.fallback).flush()


class Invocation:
    """One invocation's log and its one outcome: whichever of the handler and the watchdog finishes
    it first reports it, the other does nothing."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.started = time.time()
        self.logs = io.StringIO()
        self.finished = threading.Event()
        self._claimed = threading.Lock()

    def finish(self, outcome: str, body: dict[str, Any] | bytes) -> bool:
        """Post the log and the outcome; False if the invocation was already finished."""
        if not self._claimed.acquire(blocking=False):
            return False
        self.finished.set()
        duration_ms = (time.time() - self.started) * 1000
        self.logs.write(f"END RequestId: {self.request_id}\n")
        self.logs.write(f"REPORT RequestId: {self.request_id}\tDuration: {duration_ms:.2f} ms\n")
        post(f"/invocations/{self.request_id}/logs", {"logs": self.logs.getvalue()})
        post(f"/invocations/{self.request_id}/{outcome}", body)
        return True


class Environment:
    """The handler, run one invocation at a time, each within the function's timeout."""

    def __init__(self, handler: Any, timeout_s: float, capture: Capture) -> None:
        self.handler = handler
        self.timeout_s = timeout_s
        self.capture = capture
        self.lock = threading.Lock()

    def invoke(self, invoke: dict[str, Any]) -> None:
        with self.lock:
            call = Invocation(invoke["invoke-id"])
            try:
                threading.Thread(target=self._time_out, args=(call,), daemon=True).start()
            except RuntimeError as exc:  # no thread can start: the environment cannot go on
                call.finish("error", error("Runtime.ExitError", f"the environment cannot start a thread: {exc}"))
                os._exit(EXIT_NO_THREAD)
            outcome, body = "response", b"null"
            self.capture.target = call.logs
            try:
                print(f"START RequestId: {call.request_id} Version: $LATEST")
                event = json.loads(invoke.get("payload") or "null")
                body = json.dumps(self.handler(event, Context(invoke, call.started + self.timeout_s))).encode()
            except MemoryError:
                call.finish("error", error("Runtime.OutOfMemory", "Runtime exited: out of memory"))
                os._exit(EXIT_OUT_OF_MEMORY)  # as on Lambda, the environment does not survive it
            except Exception as exc:  # the handler's own error: Lambda reports it, the environment lives on
                traceback.print_exc()
                outcome = "error"
                trace = traceback.format_tb(exc.__traceback__)
                body = json.dumps(error(type(exc).__name__, str(exc), trace)).encode()
            finally:
                self.capture.target = None
            call.finish(outcome, body)

    def _time_out(self, call: Invocation) -> None:
        if call.finished.wait(self.timeout_s):
            return  # the handler finished in time: this watchdog ends with its invocation
        message = f"Task timed out after {self.timeout_s:.2f} seconds"
        call.logs.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {call.request_id} {message}\n")
        try:
            if not call.finish("error", error("Sandbox.Timedout", message)):
                return  # the handler finished first
        except OSError:  # the emulator is gone: nobody to tell, the environment ends all the same
            pass
        os._exit(EXIT_TIMED_OUT)  # the handler may still run: the environment goes, as on Lambda


def exit_with_parent() -> None:
    """End this environment when the emulator that started it is gone (killed, crashed)."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(EXIT_ORPHANED)


def main() -> None:
    task_root, port = sys.argv[1], int(sys.argv[2])
    memory_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
    limit = (memory_mb + INTERPRETER_HEADROOM_MB) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    threading.Thread(target=exit_with_parent, daemon=True).start()
    capture = Capture(sys.__stdout__)
    sys.stdout = sys.stderr = capture
    sys.path.insert(0, task_root)
    os.chdir(task_root)
    module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as exc:  # what Lambda calls Runtime.ImportModuleError: the environment fails to start
        post(f"/status/{RUNTIME_ID}/error", error("Runtime.ImportModuleError", f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from exc
    environment = Environment(handler, float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "3")), capture)

    class Invocations(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            invoke = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            try:  # accepted only once it runs: a thread that cannot start ends the environment
                threading.Thread(target=environment.invoke, args=(invoke,), daemon=True).start()
            except RuntimeError:
                self.send_response(500)
                self.end_headers()
                os._exit(EXIT_NO_THREAD)
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Requests are not logged: the function's own output is its log."""

    server = ThreadingHTTPServer(("127.0.0.1", port), Invocations)
    post(f"/status/{RUNTIME_ID}/ready", {})
    server.serve_forever()


if __name__ == "__main__":
    main()
