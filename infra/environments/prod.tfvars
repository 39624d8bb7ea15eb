# terraform plan -var-file=environments/prod.tfvars
project_id   = "my-project-prod"
environment  = "prod"
github_owner = "my-org"
github_repo  = "mlops-template"

force_destroy                = false
pipeline_root_retention_days = 365
request_log_retention_days   = 180

run_training_on_main = false       # prod trains on release tags and on the schedule
training_schedule    = "0 3 * * 1" # Mondays 03:00
monitoring_schedule  = "0 6 * * *" # daily, matching monitoring.window_hours = 24
schedule_time_zone   = "Etc/UTC"

alert_emails = ["ml-oncall@example.com"]

cmek_enabled        = true
kms_rotation_period = "7776000s"
create_network      = true
subnet_cidr         = "10.20.0.0/20"

labels = {
  cost-center = "ml-platform"
}
