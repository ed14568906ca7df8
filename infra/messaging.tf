# Ingest queue (target of the topic rule), its dead-letter queue, the alert topic with a
# tap queue that tests and load runs read alerts from, and the ops topic for alarms.
# Queues use SQS-managed SSE: the topic rule and the topic can write to them without KMS grants.
resource "aws_sqs_queue" "dlq" {
  name                      = "${local.name}-ingest-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "ingest" {
  name                       = "${local.name}-ingest"
  visibility_timeout_seconds = 6 * var.processor_timeout_seconds
  message_retention_seconds  = 345600
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sns_topic" "alerts" {
  name              = "${local.name}-alerts"
  kms_master_key_id = aws_kms_key.main.arn
}

resource "aws_sns_topic" "ops" {
  name              = "${local.name}-ops"
  kms_master_key_id = aws_kms_key.main.arn
}

resource "aws_sqs_queue" "alerts_tap" {
  name                      = "${local.name}-alerts-tap"
  message_retention_seconds = 345600
  sqs_managed_sse_enabled   = true
}

data "aws_iam_policy_document" "alerts_tap" {
  statement {
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.alerts_tap.arn]
    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_sns_topic.alerts.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "alerts_tap" {
  queue_url = aws_sqs_queue.alerts_tap.id
  policy    = data.aws_iam_policy_document.alerts_tap.json
}

resource "aws_sns_topic_subscription" "alerts_tap" {
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "sqs"
  endpoint  = aws_sqs_queue.alerts_tap.arn
}
