variable "project" {
  description = "Prefix of every resource name."
  type        = string
  default     = "iot-pipeline"
}

variable "environment_suffix" {
  description = "Suffix of every resource name, so several stacks share one account."
  type        = string
  default     = "dev"

  validation {
    condition     = can(regex("^[a-z0-9-]{1,16}$", var.environment_suffix))
    error_message = "environment_suffix must be 1-16 characters of a-z, 0-9 and '-'."
  }
}

variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "us-east-1"
}

variable "emulator" {
  description = "True when deploying to a local emulator: skips the account checks an emulator cannot answer."
  type        = bool
  default     = false
}

variable "enable_iot_rule" {
  description = "Create the AWS IoT topic rule. Off where IoT Core does not exist (LocalStack's free edition)."
  type        = bool
  default     = true
}

variable "lambda_zip_path" {
  description = "Path of the processor bundle built by `make build` (deterministic zip)."
  type        = string
  default     = "../build/processor.zip"
}

variable "log_retention_days" {
  description = "Retention of the processor's CloudWatch log group."
  type        = number
  default     = 30
}

variable "archive_expiration_days" {
  description = "Days after which raw archive and quarantine objects expire."
  type        = number
  default     = 90
}

variable "telemetry_ttl_days" {
  description = "Days a reading stays in DynamoDB before TTL removes it."
  type        = number
  default     = 30
}

variable "max_clock_skew_seconds" {
  description = "Largest distance between a device timestamp and the processor's clock that is accepted."
  type        = number
  default     = 300
}

variable "alert_thresholds" {
  description = "Per-device-type alert thresholds: {device_type = {reading = {min, max, severity}}}."
  type = map(map(object({
    min      = optional(number)
    max      = optional(number)
    severity = optional(string, "warning")
  })))
  default = {
    environmental = {
      temperature = { max = 45, severity = "critical" }
      co2         = { max = 2000 }
    }
    vibration = {
      vibration_rms       = { max = 11.2, severity = "critical" }
      bearing_temperature = { max = 90 }
    }
    power_meter = {
      voltage      = { min = 207, max = 253 }
      power_factor = { min = 0.7 }
    }
    cold_chain = {
      temperature = { min = -30, max = 8, severity = "critical" }
      battery     = { min = 10 }
    }
  }
}

variable "alert_cooldown_seconds" {
  description = "Minimum time between two alerts of the same rule for the same device."
  type        = number
  default     = 300
}

variable "processor_timeout_seconds" {
  description = "Processor Lambda timeout; the ingest queue's visibility timeout is six times this."
  type        = number
  default     = 30
}

variable "queue_batch_size" {
  description = "Records per processor invocation from the ingest queue."
  type        = number
  default     = 10
}

variable "queue_max_concurrency" {
  description = "Maximum concurrent processor invocations from the ingest queue (2-1000)."
  type        = number
  default     = 5
}

variable "max_receive_count" {
  description = "Deliveries of an ingest message before it moves to the dead-letter queue."
  type        = number
  default     = 5
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the KMS key is deleted on destroy."
  type        = number
  default     = 7
}

variable "processor_log_level" {
  description = "The processor's log level (Powertools)."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.processor_log_level)
    error_message = "processor_log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "signing_key_version" {
  description = "Raise it to write a new random device signing key (a rotation; the key never enters the state)."
  type        = number
  default     = 1

  validation {
    condition     = var.signing_key_version >= 1 && floor(var.signing_key_version) == var.signing_key_version
    error_message = "signing_key_version must be a whole number from 1."
  }
}

variable "functions_endpoint_url" {
  description = "On an emulator only: the endpoint the processor's AWS SDK calls (the testbed's API fault proxy, on loopback); empty: the SDK's default (AWS, or what the emulator sets)."
  type        = string
  default     = ""

  validation {
    condition     = var.functions_endpoint_url == "" || can(regex("^http://[^/[:space:]]+:[0-9]{1,5}$", var.functions_endpoint_url))
    error_message = "functions_endpoint_url must be empty or http://<host>:<port>."
  }
}
