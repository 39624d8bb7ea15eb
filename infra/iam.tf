# One service account per role, and one table of what each may do where. Grants sit on the
# resource (bucket, repository, dataset, service account) wherever IAM allows; project-level
# grants are only those whose permissions have no narrower resource: creating Vertex AI,
# Dataflow and BigQuery jobs, running as a Dataflow worker, writing logs.

resource "google_service_account" "pipelines" {
  project      = var.project_id
  account_id   = "${local.prefix}-pipelines"
  display_name = "Vertex AI pipeline steps and Dataflow workers"

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "cloudbuild" {
  project      = var.project_id
  account_id   = "${local.prefix}-cloudbuild"
  display_name = "Cloud Build: test, build and push the image, compile and upload templates"

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "serving" {
  project      = var.project_id
  account_id   = "${local.prefix}-serving"
  display_name = "The Vertex AI endpoint's deployed model"

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "monitoring" {
  project      = var.project_id
  account_id   = "${local.prefix}-monitoring"
  display_name = "Monitoring pipeline: reads request logs, may launch retraining"

  depends_on = [google_project_service.enabled]
}

locals {
  service_accounts = {
    pipelines  = google_service_account.pipelines
    cloudbuild = google_service_account.cloudbuild
    serving    = google_service_account.serving
    monitoring = google_service_account.monitoring
  }

  # scope => service account => roles
  grants = {
    project = {
      # aiplatform.user: create pipeline/custom/batch jobs, upload and deploy models.
      # dataflow.developer: launch the Beam steps' Dataflow jobs; dataflow.worker: be their workers.
      pipelines = ["roles/aiplatform.user", "roles/dataflow.developer", "roles/dataflow.worker"]
      # aiplatform.user: submit a training run when _RUN_TRAINING is true. Builds log to Cloud
      # Logging only (a user-managed build service account has no default logs bucket).
      cloudbuild = ["roles/aiplatform.user", "roles/logging.logWriter"]
      # Its Dataflow jobs run with the pipelines account as workers (see act_as below).
      monitoring = ["roles/aiplatform.user", "roles/bigquery.jobUser", "roles/dataflow.developer"]
    }
    bucket = {
      # legacyBucketReader adds storage.buckets.get, which Beam checks on its temp location.
      pipelines  = ["roles/storage.objectUser", "roles/storage.legacyBucketReader"]
      monitoring = ["roles/storage.objectUser", "roles/storage.legacyBucketReader"]
      serving    = ["roles/storage.objectViewer"]
    }
    images = {
      cloudbuild = ["roles/artifactregistry.writer"]
      pipelines  = ["roles/artifactregistry.reader"] # Dataflow workers pull the project image
    }
    templates = {
      cloudbuild = ["roles/artifactregistry.writer"]
      pipelines  = ["roles/artifactregistry.reader"]
      monitoring = ["roles/artifactregistry.reader"] # scheduled runs and retraining read templates
    }
    request_logs = {
      # The prediction pipeline points the endpoint's request-response logging at this dataset.
      pipelines  = ["roles/bigquery.dataEditor"]
      monitoring = ["roles/bigquery.dataViewer"]
    }
  }

  # service account => the service accounts that may act as it (iam.serviceAccountUser on it)
  act_as = {
    # Cloud Build submits runs as the pipelines account; pipeline steps start custom jobs and
    # Dataflow workers as it; the monitoring pipeline's Dataflow workers and retraining too.
    pipelines = ["cloudbuild", "pipelines", "monitoring"]
    # The prediction pipeline deploys the model with the serving account.
    serving = ["pipelines"]
    # A scheduled monitoring run is created by, and runs as, the monitoring account.
    monitoring = ["monitoring"]
  }

  bindings = {
    for scope, table in local.grants : scope => merge([
      for account, roles in table : {
        for role in roles : "${account} ${role}" => {
          member = "serviceAccount:${local.service_accounts[account].email}"
          role   = role
        }
      }
    ]...)
  }

  act_as_bindings = merge([
    for target, users in local.act_as : {
      for user in users : "${user} as ${target}" => {
        service_account_id = local.service_accounts[target].name
        member             = "serviceAccount:${local.service_accounts[user].email}"
      }
    }
  ]...)
}

resource "google_project_iam_member" "project" {
  for_each = local.bindings.project

  project = var.project_id
  role    = each.value.role
  member  = each.value.member
}

resource "google_storage_bucket_iam_member" "pipeline_root" {
  for_each = local.bindings.bucket

  bucket = google_storage_bucket.pipeline_root.name
  role   = each.value.role
  member = each.value.member
}

resource "google_artifact_registry_repository_iam_member" "images" {
  for_each = local.bindings.images

  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = each.value.role
  member     = each.value.member
}

resource "google_artifact_registry_repository_iam_member" "templates" {
  for_each = local.bindings.templates

  project    = var.project_id
  location   = google_artifact_registry_repository.pipelines.location
  repository = google_artifact_registry_repository.pipelines.name
  role       = each.value.role
  member     = each.value.member
}

resource "google_bigquery_dataset_iam_member" "request_logs" {
  for_each = local.bindings.request_logs

  project    = var.project_id
  dataset_id = google_bigquery_dataset.request_logs.dataset_id
  role       = each.value.role
  member     = each.value.member
}

resource "google_service_account_iam_member" "act_as" {
  for_each = local.act_as_bindings

  service_account_id = each.value.service_account_id
  role               = "roles/iam.serviceAccountUser"
  member             = each.value.member
}
