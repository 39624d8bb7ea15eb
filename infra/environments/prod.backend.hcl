# terraform init -reconfigure -backend-config=environments/prod.backend.hcl
bucket = "my-project-prod-tfstate"
prefix = "mlops/prod"
