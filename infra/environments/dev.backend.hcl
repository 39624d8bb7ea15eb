# terraform init -reconfigure -backend-config=environments/dev.backend.hcl
bucket = "my-project-dev-tfstate"
prefix = "mlops/dev"
