"""The topic rule: which of its SQL the local path evaluates, and how."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from ingress.rule import Message, RuleError, RuleEvaluationError, parse_rule
from testbed.parity.probes.common import NONE_HERE
from testbed.parity.throwaway import (
    Throwaway,
    wait_until,
)
from testbed.parity.types import ProbeContext, Row, Verdict

RULE_WAIT_S = 5.0


_TOPIC_LEVEL = re.compile(r"\btopic\s*\(\s*(\d+)\s*\)\s+AS\s+([A-Za-z_]\w*)", re.IGNORECASE)
_FUNCTION = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
_FROM = re.compile(r"\bFROM\s+'([^']*)'", re.IGNORECASE)


@dataclass(frozen=True)
class RuleSeen:
    sql: str
    topic: str
    payload: dict[str, Any]
    # the rule's output for the probe message; None: it produced none; an error: what was refused
    output: dict[str, Any] | None
    error: str | None
    engine: str
    # why the probe could not run the SQL at all (no observation either way)
    skipped: str | None = None


def rule_functions(sql: str) -> tuple[str, ...]:
    return tuple(sorted({name.lower() for name in _FUNCTION.findall(sql)}))


def observe_rule(ctx: ProbeContext) -> RuleSeen:
    """The deployed SQL on a probe message, by the engine this ingress mode uses."""
    sql = ctx.outputs.iot_rule_sql
    payload = {"parity": ctx.name, "n": 1}
    if ctx.ingress != "iot":
        topic = ctx.device_topic.for_device(ctx.name)
        try:
            out = parse_rule(sql).apply(Message(topic, json.dumps(payload).encode(), ctx.name, int(time.time() * 1000)))
        except (RuleError, RuleEvaluationError) as error:
            return RuleSeen(sql, topic, payload, None, str(error), "the rule bridge")
        return RuleSeen(sql, topic, payload, json.loads(out) if out is not None else None, None, "the rule bridge")
    return _observe_iot_rule(ctx, sql, payload)


def _observe_iot_rule(ctx: ProbeContext, sql: str, payload: dict[str, Any]) -> RuleSeen:
    """The emulator's IoT Core: the same SQL under a probe topic filter, its action into a probe queue."""
    engine = "the emulator's IoT Core"
    found = _FROM.search(sql)
    levels = found.group(1).split("/") if found else []
    if found is None or levels[0] in ("+", "#"):
        skipped = "its FROM has no literal first level to move aside"
        return RuleSeen(sql, "", payload, None, None, engine, skipped=skipped)
    probe_sql = sql[: found.start(1)] + "/".join([ctx.name, *levels[1:]]) + sql[found.end(1) :]
    topic = "/".join([ctx.name, *[ctx.name if level in ("+", "#") else level for level in levels[1:]]])
    iot, sqs = ctx.client("iot"), ctx.client("sqs")
    role = iot.get_topic_rule(ruleName=ctx.outputs.iot_rule_name)["rule"]["actions"][0]["sqs"]["roleArn"]
    rule_name = ctx.name.replace("-", "_")
    received: list[dict[str, Any]] = []
    with Throwaway() as made:
        queue_url = sqs.create_queue(QueueName=f"{ctx.name}-rule")["QueueUrl"]
        made.delete(f"queue {ctx.name}-rule", lambda: sqs.delete_queue(QueueUrl=queue_url))
        iot.create_topic_rule(
            ruleName=rule_name,
            topicRulePayload={
                "sql": probe_sql,
                "awsIotSqlVersion": "2016-03-23",
                "ruleDisabled": False,
                "actions": [{"sqs": {"queueUrl": queue_url, "roleArn": role, "useBase64": False}}],
            },
        )
        made.delete(f"rule {rule_name}", lambda: iot.delete_topic_rule(ruleName=rule_name))
        ctx.client("iot-data").publish(topic=topic, qos=1, payload=json.dumps(payload).encode())

        def arrived() -> bool:
            for message in sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", []):
                received.append(json.loads(message["Body"]))
            return bool(received)

        wait_until(arrived, RULE_WAIT_S, every_s=0.1)
    return RuleSeen(probe_sql, topic, payload, received[0] if received else None, None, engine)


def judge_rule(seen: RuleSeen) -> Row:
    functions = rule_functions(seen.sql.split(" FROM ", 1)[0] if " FROM " in seen.sql else seen.sql)
    aws = f"evaluates the rule's SQL ({', '.join(functions) or 'no functions'}) and runs its actions"
    if seen.skipped is not None:
        return Row("Rule SQL", aws, f"{seen.engine}: not run, {seen.skipped}", Verdict.UNKNOWN, "")
    if seen.error is not None:
        return Row(
            "Rule SQL",
            aws,
            f"{seen.engine} refused it: {seen.error}",
            Verdict.DIFFERS,
            "messages this rule would carry on AWS are not carried here",
        )
    if seen.output is None:
        return Row("Rule SQL", aws, f"{seen.engine}: no output for the probe message", Verdict.UNKNOWN, "")
    wrong = []
    if re.search(r"SELECT\s+\*", seen.sql, re.IGNORECASE):
        wrong += [f"{k} missing" for k in seen.payload if k not in seen.output]
    levels = seen.topic.split("/")
    for index, alias in _TOPIC_LEVEL.findall(seen.sql):
        expected = levels[int(index) - 1] if 0 < int(index) <= len(levels) else None
        if seen.output.get(alias) != expected:
            wrong.append(f"{alias}={seen.output.get(alias)!r}, not {expected!r}")
    if wrong:
        return Row(
            "Rule SQL", aws, f"{seen.engine}: {'; '.join(wrong)}", Verdict.DIFFERS, "the processor sees other fields"
        )
    return Row("Rule SQL", aws, f"{seen.engine}: the fields AWS would produce", Verdict.SAME, NONE_HERE)
