"""The probes, one module per family: each creates throwaway resources named after the probe,
exercises one AWS behaviour the pipeline relies on, deletes what it made, and returns what it saw.
Judging what was seen is a separate pure function per probe, so a changed behaviour is seen to
change its row (unit tests)."""

from testbed.parity.probes.alarms import AlarmSeen, judge_alarm, observe_alarm
from testbed.parity.probes.broker import BrokerSeen, judge_broker, observe_broker
from testbed.parity.probes.common import NONE_HERE
from testbed.parity.probes.firehose import FirehoseSeen, judge_firehose, observe_firehose
from testbed.parity.probes.function import LAMBDA_RESERVED_ENV_KEYS, LambdaSeen, judge_lambda, observe_lambda
from testbed.parity.probes.limits import LimitsSeen, judge_limits, observe_limits
from testbed.parity.probes.rule import RuleSeen, judge_rule, observe_rule, rule_functions

__all__ = [
    "LAMBDA_RESERVED_ENV_KEYS",
    "NONE_HERE",
    "AlarmSeen",
    "BrokerSeen",
    "FirehoseSeen",
    "LambdaSeen",
    "LimitsSeen",
    "RuleSeen",
    "judge_alarm",
    "judge_broker",
    "judge_firehose",
    "judge_lambda",
    "judge_limits",
    "judge_rule",
    "observe_alarm",
    "observe_broker",
    "observe_firehose",
    "observe_lambda",
    "observe_limits",
    "observe_rule",
    "rule_functions",
]
