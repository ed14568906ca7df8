"""LocalStack without Docker: DynamoDB served by moto, Lambda run as local processes.

Loaded by LocalStack itself (its plugin framework finds the entry points in pyproject.toml once the
project is installed into LocalStack's venv, `.venv-localstack`); it imports LocalStack, which only
that venv has. LocalStack's own DynamoDB provider downloads Java and DynamoDB Local at start, and its
only Lambda executor starts Docker containers: `PROVIDER_OVERRIDE_DYNAMODB=moto` and
`LAMBDA_RUNTIME_EXECUTOR=local-process` select these instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

from localstack import config
from localstack.aws.api.core import ServiceRequestHandler
from localstack.aws.api.dynamodb import DynamodbApi
from localstack.aws.api.firehose import StartDeliveryStreamEncryptionOutput, StopDeliveryStreamEncryptionOutput
from localstack.aws.skeleton import DispatchTable
from localstack.runtime import hooks
from localstack.services.firehose.provider import FirehoseProvider, _get_description_or_raise_not_found
from localstack.services.lambda_.invocation.executor_endpoint import ExecutorEndpoint, StatusErrorException
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin
from localstack.services.lambda_.invocation.runtime_executor import RuntimeExecutor
from localstack.services.moto import MotoFallbackDispatcher
from localstack.services.plugins import SERVICE_PLUGINS, Service, aws_provider

from localstack_plugins.sqs_bodies import keep_sqs_bodies

LOG = logging.getLogger("localstack.testbed")  # under localstack.: its log shows it
WORKER = Path(__file__).with_name("lambda_worker.py")
# The interpreter of each runtime, `LAMBDA_PYTHON_3_12`-style, set by the testbed when it starts LocalStack.
RUNTIME_INTERPRETER = "LAMBDA_{runtime}"
LOOPBACK = "127.0.0.1"
STOP_TIMEOUT_S = 10


# The operations that write items. moto checks a condition and then writes, in two steps, while
# LocalStack serves requests on many threads: two claims of one key could both pass
# `attribute_not_exists`. DynamoDB applies each write atomically; one lock around them does here.
ITEM_WRITES = frozenset(
    {
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "ExecuteStatement",
        "BatchExecuteStatement",
        "ExecuteTransaction",
    }
)


def atomic_writes(provider: object) -> DispatchTable:
    """moto's dispatch table, with every item write holding one lock, as DynamoDB's writes are atomic."""
    table = MotoFallbackDispatcher(provider)
    lock = threading.Lock()

    def serialised(handler: ServiceRequestHandler) -> ServiceRequestHandler:
        def call(context: Any, request: Any) -> Any:
            with lock:
                return handler(context, request)

        return call

    return {op: serialised(handler) if op in ITEM_WRITES else handler for op, handler in table.items()}


@aws_provider(api="dynamodb", name="moto")
def dynamodb_moto() -> Service:
    """Every DynamoDB operation answered by moto's backend (no Java, no download), writes atomic."""

    class MotoDynamoDB(DynamodbApi):
        """No operation of its own: each one falls through to moto."""

    return Service.for_provider(MotoDynamoDB(), dispatch_table_factory=atomic_writes)


# Services whose providers import the same moto modules when they load (both import LocalStack's
# iam_patches, and with it moto.iam): loaded lazily by two first requests at once (Terraform's
# first apply), Python 3.13.0's import locks report a deadlock and the module stays broken, every
# later call answering 500 (seen once: sts.GetCallerIdentity failing for 10 minutes after a restart).
LOADED_TOGETHER = ("iam", "sts")
PRELOADED = "testbed: loaded {} before the first request"


@hooks.on_infra_start()
def load_shared_services_first() -> None:
    """Load the services that share moto's modules one after another, before any request comes."""
    for api in LOADED_TOGETHER:
        SERVICE_PLUGINS.require(api)
    LOG.info(PRELOADED.format(", ".join(LOADED_TOGETHER)))


@aws_provider(api="firehose", name="encryption")
def firehose_encryption() -> Service:
    """LocalStack's Firehose, which does not take StartDeliveryStreamEncryption, taking it: the stream
    says its encryption is ENABLED with the key it was given (records are not encrypted at rest here)."""

    class EncryptionRecordingFirehose(FirehoseProvider):
        def start_delivery_stream_encryption(
            self,
            context: Any,
            delivery_stream_name: str,
            delivery_stream_encryption_configuration_input: dict[str, str] | None = None,
            **kwargs: Any,
        ) -> StartDeliveryStreamEncryptionOutput:
            description = _get_description_or_raise_not_found(context, delivery_stream_name)
            asked = delivery_stream_encryption_configuration_input or {}
            description["DeliveryStreamEncryptionConfiguration"] = {
                "KeyType": asked.get("KeyType", "AWS_OWNED_CMK"),
                **({"KeyARN": asked["KeyARN"]} if asked.get("KeyARN") else {}),
                "Status": "ENABLED",
            }
            return StartDeliveryStreamEncryptionOutput()

        def stop_delivery_stream_encryption(
            self, context: Any, delivery_stream_name: str, **kwargs: Any
        ) -> StopDeliveryStreamEncryptionOutput:
            description = _get_description_or_raise_not_found(context, delivery_stream_name)
            description["DeliveryStreamEncryptionConfiguration"] = {"Status": "DISABLED"}
            return StopDeliveryStreamEncryptionOutput()

    return Service.for_provider(EncryptionRecordingFirehose())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def runtime_interpreter(runtime: str) -> str:
    """The Python a runtime (python3.12) runs on: what the testbed found for it, else its name on PATH."""
    return os.environ.get(RUNTIME_INTERPRETER.format(runtime=runtime.upper().replace(".", "_")), runtime)


class LocalProcessExecutor(RuntimeExecutor):
    """One execution environment: a process of lambda_worker.py on 127.0.0.1, on the runtime's Python."""

    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id, function_version)
        self.port = _free_port()
        self.endpoint = ExecutorEndpoint(id, container_address=LOOPBACK, container_port=self.port)
        self.process: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        self.request_id = ""
        self.stopping = False

    def start(self, env_vars: dict[str, str]) -> None:
        self.env = {name: str(value) for name, value in env_vars.items()}
        self.env["PATH"] = os.environ.get("PATH", "")
        # glibc reserves an arena per thread; under the function's address-space limit a few threads
        # would exhaust it
        self.env["MALLOC_ARENA_MAX"] = "2"
        self._spawn()

    def _spawn(self) -> None:
        """Start the environment's process and wait until it says it is ready (or fails)."""
        self.port = self.endpoint.container_port = _free_port()  # a dead one's port may be another's now
        self.endpoint.start()
        code = self.function_version.config.code.get_unzipped_code_location()
        self.process = subprocess.Popen(
            [runtime_interpreter(self.function_version.config.runtime), str(WORKER), str(code), str(self.port)],
            env=self.env,
            cwd=code,
            start_new_session=True,
        )
        threading.Thread(target=self._watch, args=(self.process,), daemon=True).start()
        self.endpoint.wait_for_startup()

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        """A process that exits while LocalStack waits for it fails what it waited for at once,
        instead of after LocalStack's own timeouts (20 s to start, 905 s for an invocation)."""
        code = process.wait()
        if self.stopping:
            return
        exited = f"Runtime exited with error: exit status {code}"
        startup = self.endpoint.startup_future
        if startup is not None and not startup.done():
            payload = json.dumps({"errorType": "Runtime.ExitError", "errorMessage": exited}).encode()
            startup.set_exception(StatusErrorException(exited, payload=payload))
        invocation = self.endpoint.invocation_future
        if invocation is not None and not invocation.done():
            body = {"errorType": "Runtime.ExitError", "errorMessage": f"RequestId: {self.request_id} Error: {exited}"}
            invocation.set_result(InvocationResult(self.request_id, json.dumps(body).encode(), is_error=True))

    def stop(self) -> None:
        self.stopping = True
        if self.process is not None and self.process.poll() is None:
            # its own session: the handler's children go with it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_S)
        self.endpoint.shutdown()

    def get_address(self) -> str:
        return LOOPBACK

    def get_endpoint_from_executor(self) -> str:
        return LOOPBACK

    def get_runtime_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{config.GATEWAY_LISTEN[0].port}{self.endpoint.get_endpoint_prefix()}"

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        if self.process is not None and self.process.poll() is not None:
            # the last invocation ended this environment (a timeout, memory exhausted): a new one
            # starts, a cold start as on Lambda, instead of LocalStack sending to a dead port
            self._spawn()
        self.request_id = payload.get("invoke-id", "")
        return self.endpoint.invoke(payload)

    def get_logs(self) -> str:
        return ""

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        if function_version.config.code:
            function_version.config.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        """The unzipped code is LocalStack's to remove."""


class LocalProcessExecutorPlugin(RuntimeExecutorPlugin):
    name = "local-process"

    def load(self, *args: Any, **kwargs: Any) -> type[RuntimeExecutor]:
        """Loaded once, as the Lambda service starts: before any event source mapping polls."""
        keep_sqs_bodies()
        return LocalProcessExecutor
