# CI/CD: three triggers on the repository's cloudbuild.yaml, told apart by _RUN_TRAINING.
# The GitHub repository must be connected to Cloud Build first (Cloud Build GitHub App, once
# per repository, in the console); Terraform cannot do that step.

locals {
  build_triggers = {
    pr-check = {
      description  = "Pull request into ${var.main_branch}: lint, test, build, compile"
      pull_request = true
      branch       = "^${var.main_branch}$"
      tag          = null
      run_training = false
    }
    main = {
      description  = "Push to ${var.main_branch}: push the image, upload the templates"
      pull_request = false
      branch       = "^${var.main_branch}$"
      tag          = null
      run_training = var.run_training_on_main
    }
    release = {
      description  = "Release tag: push the image, upload the templates, run training"
      pull_request = false
      branch       = null
      tag          = "^v.*"
      run_training = true
    }
  }
}

resource "google_cloudbuild_trigger" "ci" {
  for_each = local.build_triggers

  project     = var.project_id
  location    = "global"
  name        = "${local.prefix}-${each.key}"
  description = each.value.description
  filename    = "cloudbuild.yaml"

  # A user-managed account: cloudbuild.yaml must set options.logging: CLOUD_LOGGING_ONLY.
  service_account    = google_service_account.cloudbuild.id
  include_build_logs = "INCLUDE_BUILD_LOGS_WITH_STATUS"

  github {
    owner = var.github_owner
    name  = var.github_repo

    dynamic "pull_request" {
      for_each = each.value.pull_request ? [each.value] : []
      content {
        branch          = pull_request.value.branch
        comment_control = "COMMENTS_ENABLED_FOR_EXTERNAL_CONTRIBUTORS_ONLY"
      }
    }

    dynamic "push" {
      for_each = each.value.pull_request ? [] : [each.value]
      content {
        branch = push.value.branch
        tag    = push.value.tag
      }
    }
  }

  # The names cloudbuild.yaml reads. Values are full paths, so it never rebuilds them.
  substitutions = {
    _REGION          = var.region
    _REPOSITORY      = local.image_repository   # REGION-docker.pkg.dev/PROJECT/REPO
    _KFP_REPOSITORY  = local.kfp_repository_url # https://REGION-kfp.pkg.dev/PROJECT/REPO
    _PIPELINE_ROOT   = local.pipeline_root      # gs://BUCKET/pipelines
    _SERVICE_ACCOUNT = google_service_account.pipelines.email
    _CONFIG          = var.pipeline_config
    _RUN_TRAINING    = tostring(each.value.run_training) # "true" or "false"
  }

  depends_on = [google_project_service.enabled]
}
