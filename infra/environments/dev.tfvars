# terraform plan -var-file=environments/dev.tfvars
project_id   = "my-project-dev"
environment  = "dev"
github_owner = "my-org"
github_repo  = "mlops-template"

force_destroy                     = true
pipeline_root_retention_days      = 30
request_log_retention_days        = 14
request_log_table_expiration_days = 30

run_training_on_main = true
training_schedule    = ""          # dev trains on pushes to main, not on a clock
monitoring_schedule  = "0 6 * * *" # daily, matching monitoring.window_hours = 24

alert_emails = ["ml-dev@example.com"]

cmek_enabled   = false
create_network = false
