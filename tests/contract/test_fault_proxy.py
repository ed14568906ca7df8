"""The API fault proxy as a process, against botocore's own error parsing and retries: each
protocol's fault is raised with the code and status a rule names, retried exactly when AWS's would be,
and everything no rule hits passes through byte for byte, streamed, whatever its size."""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from fault_proxy.server import EFFECTS_PATH, FAULTS_PATH, LEDGER_PATH

BIG = 24 << 20
# botocore's `max_attempts` counts the retries after the first attempt
RETRIES = 3


class Echo(BaseHTTPRequestHandler):
    """The backend: answers each request with what it received (method, path, headers, body digest);
    GET /big streams BIG bytes back in chunks."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/big":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = b"x" * (1 << 20)
            for _ in range(BIG >> 20):
                self.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        self._echo(b"")

    def do_POST(self) -> None:
        digest = hashlib.sha256()
        if self.headers.get("Transfer-Encoding") == "chunked":
            while size := int(self.rfile.readline().strip(), 16):
                digest.update(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            while length:
                chunk = self.rfile.read(min(length, 1 << 16))
                digest.update(chunk)
                length -= len(chunk)
        self._echo(digest.hexdigest().encode())

    do_PUT = do_POST  # noqa: N815 (http.server's names)

    def _echo(self, digest: bytes) -> None:
        body = json.dumps(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "sha256": digest.decode()}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def proxy(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port_file = tmp_path_factory.mktemp("proxy") / "port"
    process = subprocess.Popen(
        [sys.executable, "-m", "fault_proxy", "--upstream", backend, "--seed", "7", "--port-file", str(port_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not port_file.exists():
        assert process.poll() is None, process.communicate()[1].decode()
        assert time.monotonic() < deadline, "the proxy never said its port"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port_file.read_text()}"
    process.terminate()
    assert process.wait(10) == 0


def chaos(proxy: str, method: str, path: str = FAULTS_PATH, body: Any = None) -> tuple[int, Any]:
    connection = http.client.HTTPConnection(proxy.removeprefix("http://"), timeout=10)
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


@pytest.fixture
def rules(proxy: str) -> Iterator[None]:
    chaos(proxy, "POST", body=[])
    chaos(proxy, "POST", EFFECTS_PATH, {"latency": 0})
    yield
    chaos(proxy, "POST", body=[])


def client(proxy: str, service: str) -> Any:
    config = Config(retries={"mode": "standard", "max_attempts": RETRIES}, connect_timeout=5, read_timeout=10)
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=proxy,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=config,
    )


def tally(proxy: str, rule: dict[str, Any]) -> dict[str, Any]:
    _, ledger = chaos(proxy, "GET", LEDGER_PATH)
    return next(t for t in ledger["rules"] if t["rule"] == rule)


# (service, operation, its parameters, the error a rule answers, whether AWS's SDK retries it)
CASES = [
    (
        "dynamodb",
        "BatchWriteItem",
        {"RequestItems": {"t": [{"PutRequest": {"Item": {"k": {"S": "1"}}}}]}},
        (400, "ProvisionedThroughputExceededException"),
        True,
    ),
    ("dynamodb", "PutItem", {"TableName": "t", "Item": {"k": {"S": "1"}}}, (400, "ValidationException"), False),
    (
        "firehose",
        "PutRecordBatch",
        {"DeliveryStreamName": "s", "Records": [{"Data": b"x"}]},
        (503, "ServiceUnavailableException"),
        True,
    ),
    ("sns", "Publish", {"TopicArn": "arn:aws:sns:us-east-1:000000000000:t", "Message": "m"}, (400, "Throttling"), True),
    (
        "sns",
        "Publish",
        {"TopicArn": "arn:aws:sns:us-east-1:000000000000:t", "Message": "m"},
        (403, "AuthorizationError"),
        False,
    ),
    (
        "sqs",
        "SendMessageBatch",
        {"QueueUrl": "http://q/000000000000/q", "Entries": [{"Id": "1", "MessageBody": "b"}]},
        (400, "RequestThrottled"),
        True,
    ),
    ("lambda", "Invoke", {"FunctionName": "processor", "Payload": b"{}"}, (429, "TooManyRequestsException"), True),
    ("kms", "Decrypt", {"CiphertextBlob": b"x"}, (400, "ThrottlingException"), True),
    ("s3", "PutObject", {"Bucket": "b", "Key": "k", "Body": b"x"}, (503, "SlowDown"), True),
]


@pytest.mark.parametrize(("service", "operation", "params", "error", "retried"), CASES)
def test_a_fault_is_raised_and_retried_by_botocore_as_awss_would_be(
    proxy: str, rules: None, service: str, operation: str, params: dict[str, Any], error: tuple[int, str], retried: bool
) -> None:
    status, code = error
    rule = {"service": service, "operation": operation, "error": {"statusCode": status, "code": code}}
    assert chaos(proxy, "POST", body=[rule]) == (200, [rule])
    method = client(proxy, service).meta.method_to_api_mapping
    name = next(python for python, api in method.items() if api == operation)
    with pytest.raises(ClientError) as raised:
        getattr(client(proxy, service), name)(**params)
    answer = raised.value.response
    assert (answer["Error"]["Code"], answer["ResponseMetadata"]["HTTPStatusCode"]) == (code, status)
    attempts = RETRIES + 1 if retried else 1
    assert answer["ResponseMetadata"]["RetryAttempts"] == attempts - 1
    counted = tally(proxy, rule)
    assert (counted["matched"], counted["failed"], counted["retried"]) == (attempts, attempts, attempts - 1)
    assert counted["reached_caller"] == 1, "one logical call, whose error its caller got"


def signed(service: str) -> dict[str, str]:
    scope = f"Credential=test/20261207/us-east-1/{service}/aws4_request"
    return {"Authorization": f"AWS4-HMAC-SHA256 {scope}, SignedHeaders=host, Signature=0"}


def test_what_no_rule_fails_passes_through_unchanged_and_streamed(proxy: str, rules: None) -> None:
    """A GetItem of 24 MB, chunked and with Expect: 100-continue, to an encoded path: the rule for
    PutItem misses it, the one that delays GetItem matches it, and the backend gets it byte for byte."""
    put, get = (
        {"service": "dynamodb", "operation": "PutItem"},
        {"service": "dynamodb", "operation": "GetItem", "latency": 1},
    )
    chaos(proxy, "POST", body=[put, get])
    connection = http.client.HTTPConnection(proxy.removeprefix("http://"), timeout=30)
    block = bytes(range(256)) * 4096
    blocks = BIG // len(block)
    headers = {"X-Amz-Target": "DynamoDB_20120810.GetItem", "Expect": "100-continue", **signed("dynamodb")}
    path = "/some%20path/%2F%C3%A9?x=1&y=%2F"
    connection.request("POST", path, body=(block for _ in range(blocks)), headers=headers, encode_chunked=True)
    response = connection.getresponse()
    echoed = json.loads(response.read())
    assert response.status == 200 and response.getheader("Content-Type") == "application/json"
    assert echoed["sha256"] == hashlib.sha256(block * blocks).hexdigest()
    assert echoed["path"] == path
    assert echoed["headers"]["X-Amz-Target"] == "DynamoDB_20120810.GetItem"
    assert "Expect" not in echoed["headers"], "the proxy answered the 100-continue itself"
    connection.request("GET", "/big")
    response = connection.getresponse()
    assert response.status == 200 and len(response.read()) == BIG
    assert tally(proxy, put)["matched"] == 0
    assert (tally(proxy, get)["matched"], tally(proxy, get)["delayed"]) == (1, 1)


def test_rules_act_on_aws_calls_only_not_on_the_emulators_own_paths(proxy: str, rules: None) -> None:
    chaos(proxy, "POST", body=[{}])
    connection = http.client.HTTPConnection(proxy.removeprefix("http://"), timeout=30)
    connection.request("GET", "/_localstack/health")
    response = connection.getresponse()
    assert response.status == 200 and response.read(), "unsigned: no AWS call, no rule"
    connection.request("GET", "/", headers=signed("sts"))
    response = connection.getresponse()
    assert response.status == 503 and b"ServiceUnavailable" in response.read(), "signed: the catch-all fails it"


def test_a_query_protocol_call_gets_the_query_protocols_error(proxy: str, rules: None) -> None:
    """SQS is JSON now, but an older SDK calls it with a form `Action`: it gets the XML it parses."""
    chaos(proxy, "POST", body=[{"service": "sqs", "operation": "SendMessage", "error": {"code": "RequestThrottled"}}])
    connection = http.client.HTTPConnection(proxy.removeprefix("http://"), timeout=30)
    form = b"Action=SendMessage&QueueUrl=http%3A%2F%2Fq&MessageBody=b"
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8", **signed("sqs")}
    connection.request("POST", "/", body=form, headers=headers)
    response = connection.getresponse()
    text = response.read().decode()
    assert response.status == 503 and response.getheader("Content-Type") == "text/xml"
    assert "<Code>RequestThrottled</Code>" in text and "<Type>Receiver</Type>" in text


def test_the_chaos_api_answers_as_localstacks_does(proxy: str, rules: None) -> None:
    first = {"service": "sns", "probability": 0.5, "error": {"statusCode": 500, "code": "InternalError"}}
    second = {"service": "dynamodb", "operation": "PutItem"}
    assert chaos(proxy, "POST", body=[first]) == (200, [first])
    assert chaos(proxy, "PATCH", body=[second]) == (200, [first, second])
    assert chaos(proxy, "GET") == (200, [first, second])
    assert chaos(proxy, "DELETE", body=[first]) == (200, [second])
    assert chaos(proxy, "POST", EFFECTS_PATH, {"latency": 50}) == (200, {"latency": 50})
    assert chaos(proxy, "GET", EFFECTS_PATH) == (200, {"latency": 50})
    started = time.monotonic()
    connection = http.client.HTTPConnection(proxy.removeprefix("http://"), timeout=10)
    connection.request("GET", "/anything")
    assert connection.getresponse().status == 200 and time.monotonic() - started >= 0.05


def test_a_rule_set_twice_is_one_rule_counted_once(proxy: str, rules: None) -> None:
    rule = {"service": "kinesis", "operation": "PutRecords", "probability": 0.5}
    chaos(proxy, "POST", body=[rule, rule])
    assert chaos(proxy, "PATCH", body=[rule]) == (200, [rule])


@pytest.mark.parametrize(
    ("method", "body", "reason"),
    [
        ("POST", {"service": "sns"}, "a list of rules"),
        ("POST", b"[" * 100_000, "not JSON"),
        ("PATCH", b"[" + b"{}," * 400_000 + b"{}]", "over 1,048,576 bytes"),
        ("POST", [{"service": "dynamodbstreams"}], "cannot tell them apart"),
        ("POST", b"{not json", "not JSON"),
        ("PATCH", [{"service": "nosuchservice"}], "unknown service"),
        ("POST", [{"probability": 2}], "probability"),
        ("DELETE", [{"latency": -1}], "latency"),
        ("POST", [{"service": "sqs", "operation": "Publish"}], "sqs has no operation 'Publish'"),
    ],
)
def test_a_bad_rule_gets_a_400_with_its_reason_and_the_rules_set_stay(
    proxy: str, rules: None, method: str, body: Any, reason: str
) -> None:
    kept = [{"service": "firehose", "operation": "PutRecordBatch"}]
    chaos(proxy, "POST", body=kept)
    status, answer = chaos(proxy, method, body=body)
    assert status == 400 and reason in answer["error"]
    assert chaos(proxy, "GET") == (200, kept)
    status, answer = chaos(proxy, "POST", EFFECTS_PATH, {"latency": -3})
    assert status == 400 and chaos(proxy, "GET", EFFECTS_PATH) == (200, {"latency": 0})


def test_a_backend_that_does_not_answer_is_a_502_that_botocore_retries(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [sys.executable, "-m", "fault_proxy", "--upstream", "http://127.0.0.1:9", "--port-file", str(port_file)],
    )
    try:
        while not port_file.exists():
            assert process.poll() is None
            time.sleep(0.05)
        with pytest.raises(ClientError) as raised:
            client(f"http://127.0.0.1:{port_file.read_text()}", "dynamodb").list_tables()
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 502
        assert raised.value.response["ResponseMetadata"]["RetryAttempts"] == RETRIES
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize("argv", [["--upstream", "ftp://x"], ["--upstream", "http://x", "--port", "70000"], []])
def test_bad_arguments_are_refused_before_it_listens(argv: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "fault_proxy", *argv], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "error:" in result.stderr
