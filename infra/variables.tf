# ---- where and what ----

variable "project_id" {
  description = "Google Cloud project that holds everything (vertex.project)."
  type        = string
}

variable "region" {
  description = "Region for Vertex AI, Dataflow, the bucket, the repositories, the dataset and the key (vertex.region)."
  type        = string
  default     = "us-central1"
}

variable "environment" {
  description = "Environment name (dev, prod, ...): part of every resource name and a label."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,7}$", var.environment))
    error_message = "environment: 2-8 lowercase letters or digits, starting with a letter."
  }
}

variable "name_prefix" {
  description = "First part of every resource name; names are <name_prefix>-<environment>[-<role>]."
  type        = string
  default     = "mlops"

  validation {
    # Service account ids are at most 30 characters: prefix + env + "-monitoring" must fit.
    condition     = can(regex("^[a-z][a-z0-9-]{1,9}$", var.name_prefix))
    error_message = "name_prefix: 2-10 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "labels" {
  description = "Extra labels on every resource that takes labels."
  type        = map(string)
  default     = {}
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete a non-empty bucket and dataset (dev only)."
  type        = bool
  default     = false
}

# ---- the pipelines ----

variable "pipeline_name" {
  description = "The config's `name`: templates are <pipeline_name>-training and <pipeline_name>-monitoring."
  type        = string
  default     = "penguins"
}

variable "pipeline_config" {
  description = "Config file Cloud Build compiles and runs (_CONFIG)."
  type        = string
  default     = "configs/penguins.yaml"
}

variable "pipeline_root_retention_days" {
  description = "Days before run artifacts under the pipeline root are deleted (registered models keep theirs there too)."
  type        = number
  default     = 365

  validation {
    condition     = var.pipeline_root_retention_days >= 1
    error_message = "pipeline_root_retention_days must be at least 1."
  }
}

# ---- CI/CD ----

variable "github_owner" {
  description = "GitHub owner (user or organisation) of the repository Cloud Build builds."
  type        = string
}

variable "github_repo" {
  description = "GitHub repository name (connected to Cloud Build through the Cloud Build GitHub App)."
  type        = string
}

variable "main_branch" {
  description = "Branch that pull requests target and whose pushes release to this environment."
  type        = string
  default     = "main"
}

variable "run_training_on_main" {
  description = "Whether a push to the main branch also runs the training pipeline (_RUN_TRAINING)."
  type        = bool
  default     = false
}

# ---- schedules ----

variable "training_schedule" {
  description = "Cron for the scheduled training run (Cloud Scheduler syntax); empty: no schedule."
  type        = string
  default     = ""
}

variable "monitoring_schedule" {
  description = "Cron for the scheduled monitoring run; empty: no schedule."
  type        = string
  default     = ""
}

variable "schedule_time_zone" {
  description = "Time zone the cron strings are read in (tz database name)."
  type        = string
  default     = "Etc/UTC"
}

variable "training_schedule_parameters" {
  description = "Pipeline parameters of a scheduled training run (for example config_json); empty: the template's defaults."
  type        = map(string)
  default     = {}
}

variable "monitoring_schedule_parameters" {
  description = "Pipeline parameters of a scheduled monitoring run; empty: the template's defaults."
  type        = map(string)
  default     = {}
}

# ---- request logs and alerts ----

variable "request_log_retention_days" {
  description = "Days a partition of the request-response log table is kept."
  type        = number
  default     = 90
}

variable "request_log_table_expiration_days" {
  description = "Default expiration of whole tables in the log dataset, the log table included; null: never (use only for throwaway environments)."
  type        = number
  default     = null
}

variable "alert_emails" {
  description = "E-mail addresses notified when a pipeline run or a scheduled launch fails (also monitoring.alert_emails)."
  type        = list(string)
  default     = []
}

# ---- optional: CMEK ----

variable "cmek_enabled" {
  description = "Encrypt the bucket, repositories and dataset with a customer-managed key (and output it for Vertex AI and Dataflow)."
  type        = bool
  default     = false
}

variable "kms_rotation_period" {
  description = "Rotation period of the CMEK key, in seconds with an `s` suffix (at most 90 days)."
  type        = string
  default     = "7776000s"

  validation {
    # try(): && does not short-circuit, and tonumber() fails on a malformed value.
    condition = can(regex("^[0-9]+s$", var.kms_rotation_period)) && try(
      tonumber(trimsuffix(var.kms_rotation_period, "s")) >= 86400 &&
      tonumber(trimsuffix(var.kms_rotation_period, "s")) <= 7776000,
      false,
    )
    error_message = "kms_rotation_period: between 86400s (1 day) and 7776000s (90 days)."
  }
}

# ---- optional: network ----

variable "create_network" {
  description = "Create a VPC and subnet (Private Google Access, firewall rules) for Dataflow workers."
  type        = bool
  default     = false
}

variable "subnet_cidr" {
  description = "IPv4 range of the Dataflow worker subnet."
  type        = string
  default     = "10.10.0.0/20"
}
