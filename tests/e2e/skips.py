"""Which end-to-end tests may skip on which backend, and why: the one list a skip must be on.

`make test` runs the same suite on the embedded backend and on LocalStack (host process). A test
that skips where this list does not allow it fails, and a listed test that ran there instead of
skipping fails the session (tests/e2e/conftest.py), so a skip can neither hide a failure nor
outlive its reason. Each reason names the difference (a row of `make parity` where there is one).
Backends: `embedded`, `localstack-host`; the compose backends are not checked (no Docker here).
"""

from __future__ import annotations

CHECKED_BACKENDS = ("embedded", "localstack-host")

# the reasons, each a row of `make parity` or a documented difference of the backend
LOCALSTACK_OWN = "LocalStack's own host process and Lambda executor: run in the LocalStack session"
NO_IOT_CORE = "no IoT Core in LocalStack's free edition (parity: Rule SQL runs in the rule bridge)"
NO_STATE = "LocalStack's free edition keeps no state: a restart of it empties the stack"

ALLOWED_SKIPS: dict[str, dict[str, str]] = {
    "test_localstack_host.py::test_the_smoke_scenario_passes_on_localstack_and_the_report_says_so": {
        "embedded": LOCALSTACK_OWN
    },
    "test_localstack_host.py::test_a_handler_past_its_timeout_is_stopped_and_reported_as_lambda_does": {
        "embedded": LOCALSTACK_OWN
    },
    "test_localstack_host.py::test_a_crash_at_import_and_a_handlers_error_are_reported_as_lambda_does": {
        "embedded": LOCALSTACK_OWN
    },
    "test_localstack_host.py::test_a_handler_that_exhausts_its_memory_is_stopped_and_reported": {
        "embedded": LOCALSTACK_OWN
    },
    "test_localstack_host.py::test_a_localstack_that_dies_mid_run_is_named_as_the_cause_and_nothing_hangs": {
        "embedded": LOCALSTACK_OWN
    },
    "test_parity.py::test_iot_core_ingress_probes_the_emulators_broker_and_rule": {"localstack-host": NO_IOT_CORE},
    "test_device_sdk.py::test_the_aws_iot_device_sdk_publishes_through_the_local_iot_core": {
        "localstack-host": NO_IOT_CORE
    },
    "test_ingress.py::test_iot_mode_uses_ministacks_broker_and_the_terraform_topic_rule": {
        "localstack-host": NO_IOT_CORE
    },
    "test_iot_things.py::test_things_certificates_and_a_thing_scoped_policy_come_and_go": {
        "localstack-host": NO_IOT_CORE
    },
    "test_iot_things.py::test_a_provisioned_fleet_publishes_over_tls_with_its_certificates": {
        "localstack-host": NO_IOT_CORE
    },
    "test_aws_target.py::test_destroy_removes_the_provisioned_things_and_every_resource": {
        "localstack-host": NO_IOT_CORE
    },
    "test_pipeline.py::test_state_survives_down_and_up": {"localstack-host": NO_STATE},
    "test_pipeline.py::test_a_permission_missing_from_the_processors_role_is_denied_and_named": {
        "localstack-host": "IAM is not enforced by LocalStack's free edition (the embedded session enforces it)"
    },
    "test_chaos.py::test_an_emulator_sigkill_keeps_the_last_snapshot_and_loses_what_came_after": {
        "localstack-host": NO_STATE
    },
    "test_restarts.py::test_after_an_emulator_restart_the_queue_is_reported_and_its_mapping_delivers": {
        "localstack-host": NO_STATE
    },
    "test_restarts.py::test_up_and_down_again_in_every_ingress_mode": {"localstack-host": NO_STATE},
    "test_restarts.py::test_state_made_on_other_ports_moves_its_queues_and_delivers_in_every_ingress_mode": {
        "localstack-host": NO_STATE
    },
}
