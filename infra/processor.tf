locals {
  function_name  = "${local.name}-processor"
  log_group_name = "/aws/lambda/${local.function_name}"
  # Built from names, not read from the function: the role it trusts is created before it.
  function_arn = "arn:${local.partition}:lambda:${var.region}:${local.account_id}:function:${local.function_name}"

  # Exactly the keys processor/config.py reads; names come from resources, tunables from variables.
  processor_environment = {
    TELEMETRY_TABLE        = aws_dynamodb_table.telemetry.name
    ALERT_STATE_TABLE      = aws_dynamodb_table.alert_state.name
    ARCHIVE_STREAM         = aws_kinesis_firehose_delivery_stream.archive.name
    ARCHIVE_BUCKET         = aws_s3_bucket.archive.bucket
    ALERTS_TOPIC_ARN       = aws_sns_topic.alerts.arn
    SIGNING_SECRET_ARN     = aws_secretsmanager_secret.signing_key.arn
    ALERT_RULES            = jsonencode(var.alert_thresholds)
    ALERT_COOLDOWN_SECONDS = tostring(var.alert_cooldown_seconds)
    MAX_CLOCK_SKEW_SECONDS = tostring(var.max_clock_skew_seconds)
    TELEMETRY_TTL_DAYS     = tostring(var.telemetry_ttl_days)
    # Powertools would otherwise take LOG_LEVEL from wherever the function runs (an emulator's own)
    POWERTOOLS_LOG_LEVEL = var.processor_log_level
  }
  # An emulator's testbed only: the processor's AWS SDK calls the API fault proxy. Never set on AWS.
  functions_endpoint = var.functions_endpoint_url == "" ? {} : { AWS_ENDPOINT_URL = var.functions_endpoint_url }
}

resource "aws_cloudwatch_log_group" "processor" {
  #checkov:skip=CKV_AWS_338:Retention is a variable (default 30 days): a testbed's logs are not kept for a year.
  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_lambda_function" "processor" {
  #checkov:skip=CKV_AWS_116:Invoked only by the SQS event source mapping; failed records go to the queue's DLQ.
  #checkov:skip=CKV_AWS_117:Talks only to regional AWS APIs; a VPC adds NAT or endpoints without a security gain here.
  #checkov:skip=CKV_AWS_115:Concurrency is bounded by the event source mapping's maximum_concurrency; reserving it fails on new accounts.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile that emulators do not offer; the zip is built reproducibly.
  #checkov:skip=CKV_AWS_50:X-Ray tracing needs xray:Put* on resource "*"; Powertools logs and metrics carry the correlation id.
  function_name    = local.function_name
  role             = aws_iam_role.processor.arn
  runtime          = "python3.12"
  handler          = "processor.handler.lambda_handler"
  filename         = var.lambda_zip_path
  source_code_hash = filebase64sha256(var.lambda_zip_path)
  timeout          = var.processor_timeout_seconds
  memory_size      = 512
  kms_key_arn      = aws_kms_key.main.arn

  environment {
    variables = merge(local.processor_environment, local.functions_endpoint)
  }

  depends_on = [aws_cloudwatch_log_group.processor, aws_iam_role_policy.processor]
}

resource "aws_lambda_event_source_mapping" "ingest" {
  event_source_arn                   = aws_sqs_queue.ingest.arn
  function_name                      = aws_lambda_function.processor.arn
  batch_size                         = var.queue_batch_size
  maximum_batching_window_in_seconds = var.queue_batch_size > 10 ? 1 : 0
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.queue_max_concurrency
  }
}

# Only Lambda, acting for this account (as in AWS's Lambda samples), assumes the role; the function's
# ARN is checked where Lambda supplies it (IfExists): AWS does not document it for execution roles.
data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLikeIfExists"
      variable = "aws:SourceArn"
      values   = [local.function_arn]
    }
  }
}

resource "aws_iam_role" "processor" {
  name               = "${local.name}-processor"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

# Least privilege: only the actions the processor calls, only on this stack's resources.
data "aws_iam_policy_document" "processor" {
  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.processor.arn}:*"]
  }

  statement {
    sid = "ConsumeIngestQueue"
    actions = [
      "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
      "sqs:ChangeMessageVisibility",
    ]
    resources = [aws_sqs_queue.ingest.arn]
  }

  statement {
    sid       = "StoreReadings"
    actions   = ["dynamodb:BatchWriteItem"]
    resources = [aws_dynamodb_table.telemetry.arn]
  }

  statement {
    sid       = "ClaimAlertCooldowns"
    actions   = ["dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.alert_state.arn]
  }

  statement {
    sid       = "ArchiveRaw"
    actions   = ["firehose:PutRecordBatch"]
    resources = [aws_kinesis_firehose_delivery_stream.archive.arn]
  }

  statement {
    sid       = "WriteQuarantine"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.archive.arn}/quarantine/*"]
  }

  statement {
    sid       = "PublishAlerts"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
  }

  statement {
    sid       = "ReadSigningKey"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.signing_key.arn]
  }

  # Only through the services that encrypt with the key on its behalf, never as a direct KMS call.
  statement {
    sid       = "UseProjectKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values = [
        "dynamodb.${var.region}.amazonaws.com", "firehose.${var.region}.amazonaws.com",
        "lambda.${var.region}.amazonaws.com", "s3.${var.region}.amazonaws.com",
        "secretsmanager.${var.region}.amazonaws.com", "sns.${var.region}.amazonaws.com",
      ]
    }
  }
}

resource "aws_iam_role_policy" "processor" {
  name   = "processor"
  role   = aws_iam_role.processor.id
  policy = data.aws_iam_policy_document.processor.json
}
