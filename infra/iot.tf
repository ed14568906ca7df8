# The topic rule is the contract between devices and the pipeline. Its SQL is defined once
# here and exported, so the local rule bridge evaluates the very same statement.
locals {
  iot_topic_filter = "sensors/+/telemetry"
  iot_rule_sql     = "SELECT *, topic(2) AS device_id FROM '${local.iot_topic_filter}'"
  iot_rule_name    = replace("${local.name}_telemetry", "-", "_")
  # Built from the name, not read from the rule: the role it trusts is created before it.
  iot_rule_arn = "arn:${local.partition}:iot:${var.region}:${local.account_id}:rule/${local.iot_rule_name}"
}

resource "aws_iot_topic_rule" "telemetry" {
  count       = var.enable_iot_rule ? 1 : 0
  name        = local.iot_rule_name
  description = "Device telemetry into the ingest queue"
  enabled     = true
  sql         = local.iot_rule_sql
  sql_version = "2016-03-23"

  sqs {
    queue_url  = aws_sqs_queue.ingest.id
    role_arn   = aws_iam_role.iot[0].arn
    use_base64 = false
  }

  # A message the rule cannot evaluate (say, a payload that is not JSON) is kept, not lost.
  error_action {
    sqs {
      queue_url  = aws_sqs_queue.dlq.id
      role_arn   = aws_iam_role.iot[0].arn
      use_base64 = true
    }
  }
}

# Only IoT, running this stack's rule in this account, assumes the role (AWS's documented trust policy).
data "aws_iam_policy_document" "iot_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["iot.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [local.iot_rule_arn]
    }
  }
}

resource "aws_iam_role" "iot" {
  count              = var.enable_iot_rule ? 1 : 0
  name               = "${local.name}-iot-rule"
  assume_role_policy = data.aws_iam_policy_document.iot_assume.json
}

data "aws_iam_policy_document" "iot" {
  statement {
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.ingest.arn, aws_sqs_queue.dlq.arn]
  }
}

resource "aws_iam_role_policy" "iot" {
  count  = var.enable_iot_rule ? 1 : 0
  name   = "send-to-ingest"
  role   = aws_iam_role.iot[0].id
  policy = data.aws_iam_policy_document.iot.json
}
