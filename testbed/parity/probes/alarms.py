"""CloudWatch alarms: does an alarm on the pipeline's metrics go off?"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.parity.probes.common import NONE_HERE
from testbed.parity.throwaway import (
    Throwaway,
    wait_until,
)
from testbed.parity.types import ProbeContext, Row, Verdict

ALARM_WAIT_S = 2.0
ALARM_PERIODS = 3


@dataclass(frozen=True)
class AlarmSeen:
    # the probe alarm's state ALARM_WAIT_S after one breaching datapoint
    state: str
    periods: int


def observe_alarm(ctx: ProbeContext) -> AlarmSeen:
    """An alarm that needs ALARM_PERIODS breaching minutes out of as many, given one breaching datapoint."""
    cloudwatch = ctx.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=ctx.name,
        Namespace="Testbed/Parity",
        MetricName=ctx.name,
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=ALARM_PERIODS,
        DatapointsToAlarm=ALARM_PERIODS,
        Threshold=0.0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="missing",
    )
    with Throwaway() as made:
        made.delete(f"alarm {ctx.name}", lambda: cloudwatch.delete_alarms(AlarmNames=[ctx.name]))
        cloudwatch.put_metric_data(Namespace="Testbed/Parity", MetricData=[{"MetricName": ctx.name, "Value": 1.0}])
        states: list[str] = []

        def alarmed() -> bool:
            states[:] = [a["StateValue"] for a in cloudwatch.describe_alarms(AlarmNames=[ctx.name])["MetricAlarms"]]
            return states == ["ALARM"]

        wait_until(alarmed, ALARM_WAIT_S)
    if len(states) != 1:
        raise RuntimeError(f"the probe alarm was not found after it was created ({len(states)} alarms)")
    return AlarmSeen(states[0], ALARM_PERIODS)


def judge_alarm(seen: AlarmSeen) -> Row:
    aws = (
        f"evaluates once a period and needs {seen.periods} breaching periods of {seen.periods}: "
        "one breaching datapoint does not set ALARM"
    )
    if seen.state == "ALARM":
        return Row(
            "Metric alarm evaluation",
            aws,
            f"ALARM at once after one breaching datapoint (DatapointsToAlarm {seen.periods} ignored)",
            Verdict.DIFFERS,
            "an alarm fires here sooner and on less evidence than on AWS: a test that sees it fire proves less",
        )
    return Row("Metric alarm evaluation", aws, f"{seen.state} after one breaching datapoint", Verdict.SAME, NONE_HERE)
