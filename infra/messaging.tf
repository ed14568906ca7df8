# Ingest queue (target of the topic rule), its dead-letter queue, the alert topic and the ops
# topic for alarms, each with a tap queue that holds what it published (tests and load runs read
# alerts from one, alarm notifications land in the other instead of nowhere).
# Queues use SQS-managed SSE: the topic rule and the topics can write to them without KMS grants.
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

locals {
  ops_topic_name = "${local.name}-ops"
  # Built from the name, not read from the topic: the key policy naming it encrypts the topic.
  ops_topic_arn = "arn:${local.partition}:sns:${var.region}:${local.account_id}:${local.ops_topic_name}"
  tapped_topics = {
    alerts = aws_sns_topic.alerts.arn
    ops    = aws_sns_topic.ops.arn
  }
}

resource "aws_sns_topic" "ops" {
  name              = local.ops_topic_name
  kms_master_key_id = aws_kms_key.main.arn
}

resource "aws_sqs_queue" "tap" {
  for_each                  = local.tapped_topics
  name                      = "${local.name}-${each.key}-tap"
  message_retention_seconds = 345600
  sqs_managed_sse_enabled   = true
}

data "aws_iam_policy_document" "tap" {
  for_each = local.tapped_topics
  statement {
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.tap[each.key].arn]
    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [each.value]
    }
  }
}

resource "aws_sqs_queue_policy" "tap" {
  for_each  = local.tapped_topics
  queue_url = aws_sqs_queue.tap[each.key].id
  policy    = data.aws_iam_policy_document.tap[each.key].json
}

resource "aws_sns_topic_subscription" "tap" {
  for_each  = local.tapped_topics
  topic_arn = each.value
  protocol  = "sqs"
  endpoint  = aws_sqs_queue.tap[each.key].arn
}

# Stacks deployed before the ops tap keep their alerts tap (and what it holds).
moved {
  from = aws_sqs_queue.alerts_tap
  to   = aws_sqs_queue.tap["alerts"]
}

moved {
  from = aws_sqs_queue_policy.alerts_tap
  to   = aws_sqs_queue_policy.tap["alerts"]
}

moved {
  from = aws_sns_topic_subscription.alerts_tap
  to   = aws_sns_topic_subscription.tap["alerts"]
}
