# The AWS target's settings, planned and applied against a mocked provider: no account, no
# credentials, no emulator. What is asserted here is what AWS would reject or a reviewer would
# flag, and what the emulators accept silently. Run by `make test` (tests/contract/test_terraform_tests.py).

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  # The provider validates ARNs it is given; a mock's random strings are not ARNs.
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:us-east-1:123456789012:key/mock" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/mock" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::mock-bucket" }
  }
  mock_resource "aws_sns_topic" {
    defaults = { arn = "arn:aws:sns:us-east-1:123456789012:mock" }
  }
  mock_resource "aws_sqs_queue" {
    defaults = {
      arn = "arn:aws:sqs:us-east-1:123456789012:mock"
      url = "https://sqs.us-east-1.amazonaws.com/123456789012/mock"
    }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mock" }
  }
  mock_resource "aws_lambda_function" {
    defaults = { arn = "arn:aws:lambda:us-east-1:123456789012:function:mock" }
  }
  mock_resource "aws_dynamodb_table" {
    defaults = { arn = "arn:aws:dynamodb:us-east-1:123456789012:table/mock" }
  }
  mock_resource "aws_kinesis_firehose_delivery_stream" {
    defaults = { arn = "arn:aws:firehose:us-east-1:123456789012:deliverystream/mock" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:us-east-1:123456789012:log-group:mock" }
  }
}

variables {
  environment_suffix = "awstest"
  emulator           = false
  enable_iot_rule    = true
  lambda_zip_path    = "../build/processor.zip"
}

run "aws_target" {
  command = apply

  # Lambda refuses these keys at CreateFunction (ministack does not).
  assert {
    condition = length(setintersection(keys(aws_lambda_function.processor.environment[0].variables), [
      "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
      "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
      "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
      "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
      "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
    ])) == 0
    error_message = "the processor's environment sets a key Lambda reserves"
  }
  assert {
    condition     = alltrue([for k in keys(aws_lambda_function.processor.environment[0].variables) : !startswith(k, "AWS_LAMBDA_")])
    error_message = "the processor's environment sets an AWS_LAMBDA_* key, which Lambda reserves"
  }

  # The bundle `make build` made, with the handler and runtime it was built for.
  assert {
    condition     = aws_lambda_function.processor.handler == "processor.handler.lambda_handler" && aws_lambda_function.processor.runtime == "python3.12"
    error_message = "the processor's handler or runtime is not the bundle's"
  }
  assert {
    condition     = aws_lambda_function.processor.source_code_hash == filebase64sha256("../build/processor.zip")
    error_message = "the function is not deployed from the built bundle"
  }

  # Customer-managed KMS everywhere data rests (queues: SQS-managed SSE).
  assert {
    condition = alltrue([
      aws_cloudwatch_log_group.processor.kms_key_id == aws_kms_key.main.arn,
      aws_dynamodb_table.telemetry.server_side_encryption[0].enabled,
      aws_dynamodb_table.telemetry.server_side_encryption[0].kms_key_arn == aws_kms_key.main.arn,
      aws_dynamodb_table.alert_state.server_side_encryption[0].kms_key_arn == aws_kms_key.main.arn,
      aws_kinesis_firehose_delivery_stream.archive.server_side_encryption[0].enabled,
      aws_kinesis_firehose_delivery_stream.archive.server_side_encryption[0].key_type == "CUSTOMER_MANAGED_CMK",
      aws_kinesis_firehose_delivery_stream.archive.server_side_encryption[0].key_arn == aws_kms_key.main.arn,
      aws_sns_topic.alerts.kms_master_key_id == aws_kms_key.main.arn,
      aws_sns_topic.ops.kms_master_key_id == aws_kms_key.main.arn,
      aws_secretsmanager_secret.signing_key.kms_key_id == aws_kms_key.main.arn,
      aws_lambda_function.processor.kms_key_arn == aws_kms_key.main.arn,
      aws_sqs_queue.ingest.sqs_managed_sse_enabled,
      aws_sqs_queue.dlq.sqs_managed_sse_enabled,
    ])
    error_message = "a store of the pipeline is not encrypted with the stack's KMS key"
  }
  assert {
    # the key goes through the write-only argument: nothing of it in the plan or the state
    condition     = aws_secretsmanager_secret_version.signing_key.secret_string == null && aws_secretsmanager_secret_version.signing_key.secret_string_wo_version == var.signing_key_version
    error_message = "the signing key's value would be written to the Terraform state"
  }
  assert {
    condition = alltrue([
      for rule in aws_s3_bucket_server_side_encryption_configuration.archive.rule :
      rule.apply_server_side_encryption_by_default[0].sse_algorithm == "aws:kms" &&
      rule.apply_server_side_encryption_by_default[0].kms_master_key_id == aws_kms_key.main.arn
    ])
    error_message = "the archive bucket does not default to the stack's KMS key"
  }
  assert {
    condition     = aws_kms_key.main.enable_key_rotation
    error_message = "the KMS key does not rotate"
  }

  # The bucket is private and refuses plain HTTP.
  assert {
    condition = alltrue([
      aws_s3_bucket_public_access_block.archive.block_public_acls,
      aws_s3_bucket_public_access_block.archive.block_public_policy,
      aws_s3_bucket_public_access_block.archive.ignore_public_acls,
      aws_s3_bucket_public_access_block.archive.restrict_public_buckets,
    ])
    error_message = "the archive bucket can be made public"
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.archive.statement :
      s.effect == "Deny" && contains(s.actions, "s3:*") && anytrue([
        for c in s.condition : c.variable == "aws:SecureTransport" && c.test == "Bool" && contains(c.values, "false")
      ])
    ])
    error_message = "the archive bucket's policy does not deny requests without TLS"
  }
  assert {
    condition     = length(aws_s3_bucket_policy.archive) == 1 && aws_s3_bucket_policy.archive[0].policy == data.aws_iam_policy_document.archive.json
    error_message = "the TLS-only document is not the bucket's policy"
  }

  # Every name carries the environment suffix, so stacks share an account.
  assert {
    condition = alltrue([for name in [
      aws_dynamodb_table.telemetry.name, aws_dynamodb_table.alert_state.name, aws_s3_bucket.archive.bucket,
      aws_kinesis_firehose_delivery_stream.archive.name, aws_sns_topic.alerts.name, aws_sns_topic.ops.name,
      aws_sqs_queue.ingest.name, aws_sqs_queue.dlq.name, aws_lambda_function.processor.function_name,
      aws_cloudwatch_log_group.processor.name, aws_secretsmanager_secret.signing_key.name,
      aws_iam_role.processor.name, aws_iam_role.firehose.name, aws_iam_role.iot[0].name,
    ] : strcontains(name, "awstest")])
    error_message = "a resource name lacks the environment suffix"
  }
  assert {
    condition     = strcontains(aws_iot_topic_rule.telemetry[0].name, "awstest")
    error_message = "the topic rule's name lacks the environment suffix"
  }

  # The IoT rule exists on AWS, sends to the ingest queue, and errors to the DLQ.
  assert {
    condition     = length(aws_iot_topic_rule.telemetry) == 1 && output.iot_rule_enabled
    error_message = "the AWS target has no topic rule"
  }

  # Every output the tools read (telemetry/outputs.py StackOutputs) is there and not empty.
  assert {
    condition = alltrue([for value in [
      output.region, output.environment_suffix, output.telemetry_table_name, output.alert_state_table_name,
      output.archive_bucket_name, output.archive_stream_name, output.alerts_topic_arn, output.alerts_tap_queue_url,
      output.ops_topic_arn, output.ops_tap_queue_url, output.ingest_queue_url, output.ingest_queue_arn,
      output.dlq_url, output.processor_function_name, output.processor_log_group_name,
      output.signing_secret_arn, output.kms_key_arn, output.iot_rule_name, output.iot_rule_sql,
    ] : value != null && value != ""])
    error_message = "an output the tools need is missing or empty"
  }
  assert {
    condition     = output.environment_suffix == "awstest" && output.region == "us-east-1"
    error_message = "the outputs do not describe the AWS target's settings"
  }
}
