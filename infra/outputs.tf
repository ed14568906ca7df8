# The outputs contract: every tool reads names, ARNs and URLs from here (testbed/outputs.py).
output "region" {
  value = var.region
}

output "environment_suffix" {
  value = var.environment_suffix
}

output "telemetry_table_name" {
  value = aws_dynamodb_table.telemetry.name
}

output "alert_state_table_name" {
  value = aws_dynamodb_table.alert_state.name
}

output "archive_bucket_name" {
  value = aws_s3_bucket.archive.bucket
}

output "archive_stream_name" {
  value = aws_kinesis_firehose_delivery_stream.archive.name
}

output "alerts_topic_arn" {
  value = aws_sns_topic.alerts.arn
}

output "alerts_tap_queue_url" {
  value = aws_sqs_queue.tap["alerts"].id
}

output "ops_topic_arn" {
  value = aws_sns_topic.ops.arn
}

output "ops_tap_queue_url" {
  value = aws_sqs_queue.tap["ops"].id
}

output "ingest_queue_url" {
  value = aws_sqs_queue.ingest.id
}

output "ingest_queue_arn" {
  value = aws_sqs_queue.ingest.arn
}

output "dlq_url" {
  value = aws_sqs_queue.dlq.id
}

output "processor_function_name" {
  value = aws_lambda_function.processor.function_name
}

output "processor_log_group_name" {
  value = aws_cloudwatch_log_group.processor.name
}

output "signing_secret_arn" {
  value = aws_secretsmanager_secret.signing_key.arn
}

output "kms_key_arn" {
  value = aws_kms_key.main.arn
}

output "iot_rule_enabled" {
  value = var.enable_iot_rule
}

output "iot_rule_name" {
  value = local.iot_rule_name
}

output "iot_rule_sql" {
  value = local.iot_rule_sql
}
