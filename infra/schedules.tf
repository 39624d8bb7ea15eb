# Scheduled training and monitoring runs. Provider 6.x has no Vertex AI schedule or pipeline
# job resource (google_vertex_ai_schedule was proposed in GoogleCloudPlatform/magic-modules#7974
# and closed unmerged; hashicorp/terraform-provider-google#23290 asks for pipeline jobs), so a
# Cloud Scheduler job calls the Vertex AI REST API, pipelineJobs.create, with an OAuth token of
# the account the run executes as. An empty cron string creates no job.

locals {
  schedules = {
    training = {
      cron            = var.training_schedule
      service_account = google_service_account.pipelines.email
      parameters      = var.training_schedule_parameters
    }
    monitoring = {
      cron            = var.monitoring_schedule
      service_account = google_service_account.monitoring.email
      parameters      = var.monitoring_schedule_parameters
    }
  }
}

resource "google_cloud_scheduler_job" "pipeline" {
  for_each = { for kind, schedule in local.schedules : kind => schedule if schedule.cron != "" }

  project     = var.project_id
  region      = var.region
  name        = "${local.prefix}-${each.key}"
  description = "Runs the ${var.pipeline_name}-${each.key} template from ${local.kfp_repository_url}"
  schedule    = each.value.cron
  time_zone   = var.schedule_time_zone

  # pipelineJobs.create is not idempotent: a retry after a timeout could start a second run.
  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = "https://${var.region}-aiplatform.googleapis.com/v1/projects/${var.project_id}/locations/${var.region}/pipelineJobs"
    headers     = { "Content-Type" = "application/json" }
    body = base64encode(jsonencode(merge(
      {
        displayName    = "${var.pipeline_name}-${each.key}"
        templateUri    = "${local.kfp_repository_url}/${var.pipeline_name}-${each.key}/latest"
        serviceAccount = each.value.service_account
        labels         = { pipeline = "${var.pipeline_name}-${each.key}", trigger = "schedule" }
        runtimeConfig = {
          gcsOutputDirectory = local.pipeline_root
          # Empty: the template's defaults, i.e. the config it was compiled with.
          parameterValues = each.value.parameters
        }
      },
      var.cmek_enabled ? { encryptionSpec = { kmsKeyName = local.kms_key_id } } : {},
    )))

    oauth_token {
      service_account_email = each.value.service_account
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_project_service.enabled, google_service_account_iam_member.act_as]
}
