"""The proxy: LocalStack's Chaos API on its own paths, every other request streamed to the backend
unchanged unless a rule hits it, and a ledger of what each rule did (matched, failed, delayed, and
how the SDK answered: retried, or gave up)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import ClientConnectionResetError, ClientError, ClientSession, ClientTimeout, TCPConnector, web
from yarl import URL

from fault_proxy.calls import UNKNOWN, Call, identify, reads_form, signed_service
from fault_proxy.exceptions import RuleError
from fault_proxy.rules import Effects, FaultRule, parse_effects, parse_rules
from fault_proxy.wire import error_answer

logger = logging.getLogger(__name__)

FAULTS_PATH = "/_localstack/chaos/faults"
EFFECTS_PATH = "/_localstack/chaos/effects"
LEDGER_PATH = "/_testbed/faults/ledger"
SEED_PATH = "/_testbed/faults/seed"
# Headers that belong to one hop, never forwarded (RFC 9110 7.6.1)
HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade")
)
# Never forwarded either: the proxy answers the client's 100-continue itself (aiohttp does), and an
# upstream asked for one again could leave the call waiting for it
NOT_FORWARDED = HOP_BY_HOP | {"expect"}
CHUNK_BYTES = 64 * 1024
# The longest an upstream may be silent mid-answer: past Lambda's 15-minute limit, so only a hung
# emulator is cut, and an abandoned call cannot hold a pooled connection for ever
UPSTREAM_READ_S = 960.0
# The largest Chaos API request read (a hundred rules are a few KB)
CONTROL_MAX_BYTES = 1 << 20
# Failed calls remembered to see whether the SDK retried them: beyond this the oldest are forgotten.
REMEMBERED_FAILURES = 100_000
UPSTREAM_CONNECTIONS = 256


@dataclass
class RuleTally:
    rule: dict[str, Any]
    matched: int = 0  # calls the rule matched (its probability then decided)
    failed: int = 0  # calls answered with its error
    delayed: int = 0  # calls delayed by its latency
    retried: int = 0  # failed calls the SDK sent again

    def as_json(self) -> dict[str, Any]:
        """`reached_caller`: failures the SDK did not retry (its last attempt, an error it does not
        retry, its retry quota spent), so its caller got the error: as far as the proxy has seen."""
        return {**asdict(self), "reached_caller": self.failed - self.retried}


@dataclass
class Ledger:
    calls: int = 0
    passed: int = 0
    upstream_errors: int = 0
    clients_gone: int = 0  # clients that closed their connection before the answer was written

    def __post_init__(self) -> None:
        self.rules: dict[str, RuleTally] = {}
        self._failed: OrderedDict[str, str] = OrderedDict()

    def restart(self, rule: FaultRule) -> None:
        """A rule set anew counts from zero: its calls are numbered (and decided) as on its first setting."""
        self.rules[rule.key()] = RuleTally(rule.model_dump(mode="json", exclude_none=True))

    def tally(self, rule: FaultRule) -> RuleTally:
        key = rule.key()
        if key not in self.rules:
            self.rules[key] = RuleTally(rule.model_dump(mode="json", exclude_none=True))
        return self.rules[key]

    def failed(self, rule: FaultRule, call: Call) -> None:
        self.tally(rule).failed += 1
        if call.invocation and (call.max_attempts is None or call.attempt < call.max_attempts):
            self._failed[call.invocation] = rule.key()
            if len(self._failed) > REMEMBERED_FAILURES:
                self._failed.popitem(last=False)

    def seen(self, call: Call) -> None:
        """A retry of a call a rule failed counts as that rule's `retried`."""
        self.calls += 1
        if call.attempt > 1 and call.invocation:
            key = self._failed.pop(call.invocation, None)
            if key is not None:
                self.rules[key].retried += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "passed": self.passed,
            "upstream_errors": self.upstream_errors,
            "clients_gone": self.clients_gone,
            "rules": [t.as_json() for t in self.rules.values()],
        }


class FaultProxy:
    def __init__(self, upstream: str, seed: int) -> None:
        self.upstream = upstream.rstrip("/")
        self.seed = seed
        self.rules: tuple[FaultRule, ...] = ()
        self.effects = Effects()
        self.ledger = Ledger()
        self._session: ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=0)
        app.router.add_route("*", FAULTS_PATH, self.faults)
        app.router.add_route("*", EFFECTS_PATH, self.effects_api)
        app.router.add_get(LEDGER_PATH, self.ledger_api)
        app.router.add_route("*", SEED_PATH, self.seed_api)
        app.router.add_route("*", "/{tail:.*}", self.forward)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _: web.Application) -> None:
        self._session = ClientSession(
            connector=TCPConnector(limit=UPSTREAM_CONNECTIONS),
            timeout=ClientTimeout(total=None, connect=10, sock_read=UPSTREAM_READ_S),
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        )

    async def _close(self, _: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    def _rules_json(self) -> web.Response:
        return web.json_response([r.model_dump(mode="json", exclude_none=True) for r in self.rules])

    async def faults(self, request: web.Request) -> web.Response:
        """GET the rules; POST replaces them, PATCH adds to them, DELETE removes those given."""
        if request.method == "GET":
            return self._rules_json()
        if request.method not in ("POST", "PATCH", "DELETE"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST", "PATCH", "DELETE"])
        try:
            given = list(dict.fromkeys(parse_rules(await _control_body(request))))  # a rule set twice is one
        except RuleError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        for rule in given:
            if request.method != "DELETE" and rule not in self.rules:
                self.ledger.restart(rule)
        if request.method == "POST":
            self.rules = tuple(given)
        elif request.method == "PATCH":
            self.rules = (*self.rules, *(r for r in given if r not in self.rules))
        else:
            self.rules = tuple(r for r in self.rules if r not in given)
        logger.info("fault rules now: %s", [r.key() for r in self.rules])
        return self._rules_json()

    async def effects_api(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                self.effects = parse_effects(await _control_body(request))
            except RuleError as exc:
                return web.json_response({"error": str(exc)}, status=400)
        elif request.method != "GET":
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        return web.json_response(self.effects.model_dump())

    async def ledger_api(self, _: web.Request) -> web.Response:
        return web.json_response(self.ledger.as_json())

    async def seed_api(self, request: web.Request) -> web.Response:
        """A scenario's seed: its rules then decide the same calls on every run of it."""
        if request.method == "POST":
            try:
                seed = json.loads(await _control_body(request))["seed"]
                if not isinstance(seed, int) or isinstance(seed, bool):
                    raise TypeError(seed)
            except (ValueError, KeyError, TypeError, RecursionError, RuleError):
                return web.json_response({"error": 'the body must be {"seed": <an integer>}'}, status=400)
            self.seed = seed
        elif request.method != "GET":
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        return web.json_response({"seed": self.seed})

    def _decide(self, call: Call) -> tuple[int, FaultRule | None]:
        """The delay (ms) and the rule whose error answers the call, if one hits it. Rules act on AWS
        calls only (signed ones): an emulator's own paths (its health) stay as they are."""
        delay = self.effects.latency
        for rule in self.rules if call.service != UNKNOWN else ():
            if not rule.matches(call.service, call.region, call.operation):
                continue
            tally = self.ledger.tally(rule)
            tally.matched += 1
            if not rule.hits(self.seed, tally.matched):
                continue
            if rule.latency:
                tally.delayed += 1
                delay += rule.latency
            if rule.answers_error():
                return delay, rule
        return delay, None

    async def forward(self, request: web.Request) -> web.StreamResponse:
        _, service = signed_service(request.headers)
        form = await request.read() if request.body_exists and reads_form(request.headers, service) else None
        call = identify(request.method, request.raw_path, request.query, request.headers, form)
        self.ledger.seen(call)
        delay_ms, rule = self._decide(call)
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        if rule is not None:
            self.ledger.failed(rule, call)
            answer = error_answer(call, rule.failure)
            return web.Response(status=answer.status, headers=answer.headers, body=answer.body)
        return await self._pass(request, form)

    async def _pass(self, request: web.Request, form: bytes | None) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
        data: Any = form if form is not None else (request.content if request.body_exists else None)
        response: web.StreamResponse | None = None
        try:
            async with self._session.request(
                request.method,
                URL(self.upstream + request.raw_path, encoded=True),
                headers=headers,
                data=data,
                allow_redirects=False,
            ) as upstream:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for name, value in upstream.headers.items():
                    if name.lower() not in HOP_BY_HOP:
                        response.headers.add(name, value)
                await response.prepare(request)
                try:
                    async for chunk in upstream.content.iter_chunked(CHUNK_BYTES):
                        await response.write(chunk)
                    await response.write_eof()
                except (ClientConnectionResetError, ConnectionResetError):  # the client left: not the backend
                    self.ledger.clients_gone += 1
                    return response
        except (ClientError, OSError) as exc:
            self.ledger.upstream_errors += 1
            logger.warning("the backend at %s failed %s %s: %s", self.upstream, request.method, request.path, exc)
            if response is not None:  # cut mid-body: the client sees its connection end, as it would
                raise
            message = f"the backend at {self.upstream} did not answer: {exc}"
            return web.json_response({"message": message}, status=502)
        self.ledger.passed += 1
        return response


async def _control_body(request: web.Request) -> bytes:
    """A Chaos API request's body, refused past CONTROL_MAX_BYTES (chunked ones included)."""
    body = bytearray()
    async for chunk in request.content.iter_chunked(CHUNK_BYTES):
        body += chunk
        if len(body) > CONTROL_MAX_BYTES:
            raise RuleError(f"the body is over {CONTROL_MAX_BYTES:,} bytes")
    return bytes(body)
