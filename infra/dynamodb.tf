# Readings: one item per message. The sort key "<device ts, 13 digits>#<seq, 10 digits>"
# orders a device's readings by time and makes a redelivered message overwrite its own item.
resource "aws_dynamodb_table" "telemetry" {
  name         = "${local.name}-telemetry"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "device_id"
  range_key    = "sk"

  attribute {
    name = "device_id"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

# Alert cooldowns: one item per (device, rule), claimed with a conditional write so that
# concurrent invocations and redelivered messages raise an alert once per cooldown.
resource "aws_dynamodb_table" "alert_state" {
  name         = "${local.name}-alert-state"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"

  attribute {
    name = "pk"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}
