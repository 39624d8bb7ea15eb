# Where alerts go. Vertex AI Model Monitoring e-mails monitoring.alert_emails itself; these
# channels carry the project's alert policy below (failed pipeline runs and failed launches).

resource "google_monitoring_notification_channel" "email" {
  for_each = toset(var.alert_emails)

  project      = var.project_id
  display_name = "${local.prefix} alerts: ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "pipeline_failures" {
  count = length(var.alert_emails) > 0 ? 1 : 0

  project      = var.project_id
  display_name = "${local.prefix}: pipeline run or scheduled launch failed"
  combiner     = "OR"

  # A log-match policy has exactly one condition, hence one filter for both sources.
  conditions {
    display_name = "Vertex AI pipeline job or Cloud Scheduler job logged an error"
    condition_matched_log {
      filter = join(" ", [
        "(resource.type=\"aiplatform.googleapis.com/PipelineJob\" OR",
        "(resource.type=\"cloud_scheduler_job\" AND resource.labels.job_id=~\"^${local.prefix}-\"))",
        "AND severity>=ERROR",
      ])
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "3600s"
    }
    auto_close = "604800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A pipeline run or a scheduled launch of ${local.prefix} failed. Open the log entry, then the run in Vertex AI Pipelines (region ${var.region})."
  }

  notification_channels = [for channel in google_monitoring_notification_channel.email : channel.id]
}
