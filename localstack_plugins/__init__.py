"""LocalStack plugins of ours, so that LocalStack runs the pipeline without Docker: DynamoDB from moto
and Lambda as local processes. Installed into LocalStack's own venv (`.venv-localstack`); they import
LocalStack and the standard library, never another part of the project."""
