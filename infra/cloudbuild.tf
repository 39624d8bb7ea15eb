# CI/CD: three triggers on the repository's cloudbuild.yaml, told apart by _STAGE.
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
      stage        = "pr"
    }
    main = {
      description  = "Push to ${var.main_branch}: push the image, upload the templates"
      pull_request = false
      branch       = "^${var.main_branch}$"
      tag          = null
      run_training = var.run_training_on_main
      stage        = "main"
    }
    release = {
      description  = "Release tag: push the image, upload the templates, run training"
      pull_request = false
      branch       = null
      tag          = "^v.*"
      run_training = true
      stage        = "release"
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

  # The names cloudbuild.yaml reads (documented in its header). The repositories are passed by
  # id: cloudbuild/steps.sh builds REGION-docker.pkg.dev/PROJECT/REPO and the kfp.pkg.dev URL.
  substitutions = {
    _STAGE           = each.value.stage # pr | main | release: which steps run
    _REGION          = var.region
    _REPOSITORY      = google_artifact_registry_repository.images.repository_id
    _KFP_REPOSITORY  = google_artifact_registry_repository.pipelines.repository_id
    _PIPELINE_ROOT   = local.pipeline_root      # gs://BUCKET/pipelines
    _SERVICE_ACCOUNT = google_service_account.pipelines.email
    _CONFIG          = var.pipeline_config
    _RUN_TRAINING    = tostring(each.value.run_training) # "true" or "false"
  }

  depends_on = [google_project_service.enabled]
}
