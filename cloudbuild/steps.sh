#!/usr/bin/env bash
# One Cloud Build step: `bash cloudbuild/steps.sh STEP` (cloudbuild.yaml runs them in order).
# cloudbuild.yaml hands every substitution in as an environment variable (options.env); each
# step names the stages it runs in and, in any other stage, prints "skipped" and exits 0.
# Files pass between steps through $WORKSPACE_OUT (/workspace on Cloud Build).
set -euo pipefail

STEP=${1:?usage: cloudbuild/steps.sh STEP}
STAGE=${STAGE:-pr}
OUT=${WORKSPACE_OUT:-/workspace}
PYTHON=${PYTHON:-.venv/bin/python}
CONFIG=${CONFIG:-configs/taxi.yaml}
REGION=${REGION:-us-central1}
IMAGE_CPU="${REGION}-docker.pkg.dev/${PROJECT_ID:-}/${REPOSITORY:-}/mlops-template"
IMAGE_GPU="${IMAGE_CPU}-gpu"
KFP_HOST="https://${REGION}-kfp.pkg.dev/${PROJECT_ID:-}/${KFP_REPOSITORY:-}"
COMMIT_TAG="sha-${COMMIT_SHA:-}" # the registry tag that ties templates to their commit

case "$STAGE" in
  pr | main | release) ;;
  *) echo "STAGE must be pr, main or release, got '$STAGE'" >&2 && exit 2 ;;
esac

only() { # only STAGE...: go on when this build's stage is one of them, else skip the step
  local stage
  for stage in "$@"; do [ "$STAGE" = "$stage" ] && return 0; done
  echo "step $STEP: skipped in stage $STAGE (runs in: $*)"
  exit 0
}

need() { # need VAR...: fail with the variable's name when one is empty
  local var
  for var in "$@"; do
    [ -n "${!var:-}" ] || { echo "step $STEP: $var is empty (set its substitution)" >&2 && exit 2; }
  done
}

ensure_make() { # the python image has no make; the Makefile targets need it
  command -v make >/dev/null && return 0
  apt-get update -qq && apt-get install -y -qq --no-install-recommends make >/dev/null
}

mlops() { "$PYTHON" -m pipelines.cli "$@"; }

pipeline_flags() { # the pipelines to compile and publish (the champion is found by label)
  echo "--pipeline training --pipeline monitoring --pipeline prediction"
}

template_uri() { # template_uri FILE PIPELINE: the registry URI `mlops publish` wrote for it
  "$PYTHON" -c 'import json, sys
print(next(i["template_uri"] for i in json.load(open(sys.argv[1]))
           if i["package"].endswith("-" + sys.argv[2])))' "$1" "$2"
}

docker_context() { # the checkout without the venv the check steps built nor .git
  tar -c --exclude=./.venv --exclude=./.venv-lint --exclude=./.git --exclude=./.mlops .
}

case "$STEP" in
  install)
    ensure_make
    make install
    ;;
  lint)
    ensure_make
    make lint
    ;;
  test-fast)
    ensure_make
    make test-fast
    ;;
  compile-check)
    # Every pipeline must compile for Vertex AI (with _PARENT_MODEL when one is set).
    # No image is built in this stage: stand-in names (the spec is checked, not run).
    mlops compile --config "$CONFIG" --target vertex --pipeline all \
      --image "${REGION}-docker.pkg.dev/${PROJECT_ID:-project}/${REPOSITORY:-repository}/mlops-template:compile-check" \
      --gpu-image "${REGION}-docker.pkg.dev/${PROJECT_ID:-project}/${REPOSITORY:-repository}/mlops-template-gpu:compile-check" \
      ${PARENT_MODEL:+--parent-model "$PARENT_MODEL"} --output-dir "$OUT/compiled-check"
    ;;
  build-cpu)
    only main
    need PROJECT_ID REPOSITORY COMMIT_SHA
    docker_context | docker build --build-arg ACCELERATOR=cpu -t "$IMAGE_CPU:$COMMIT_SHA" -f Dockerfile -
    ;;
  build-gpu)
    only main
    need PROJECT_ID REPOSITORY COMMIT_SHA
    docker_context | docker build --build-arg ACCELERATOR=gpu -t "$IMAGE_GPU:$COMMIT_SHA" -f Dockerfile -
    ;;
  push)
    only main
    need PROJECT_ID REPOSITORY COMMIT_SHA
    docker push "$IMAGE_CPU:$COMMIT_SHA"
    docker push "$IMAGE_GPU:$COMMIT_SHA"
    ;;
  digest)
    # The registry's digest of what was pushed: templates name the image by content, never by tag.
    only main
    need PROJECT_ID REPOSITORY COMMIT_SHA
    for kind in cpu gpu; do
      if [ "$kind" = cpu ]; then image=$IMAGE_CPU file=image_digest.txt; else image=$IMAGE_GPU file=image_digest_gpu.txt; fi
      pinned=$(docker inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$image:$COMMIT_SHA" | grep -m1 "^$image@sha256:" || true)
      [[ "$pinned" =~ ^.+@sha256:[0-9a-f]{64}$ ]] || { echo "no pushed digest for $image:$COMMIT_SHA" >&2 && exit 1; }
      echo "$pinned" >"$OUT/$file"
      echo "$kind image: $pinned"
    done
    ;;
  compile)
    only main
    # shellcheck disable=SC2046  # one flag per word
    mlops compile --config "$CONFIG" --target vertex $(pipeline_flags) \
      --image "$(cat "$OUT/image_digest.txt")" --gpu-image "$(cat "$OUT/image_digest_gpu.txt")" \
      ${PARENT_MODEL:+--parent-model "$PARENT_MODEL"} --output-dir "$OUT/compiled"
    ;;
  publish)
    only main
    need PROJECT_ID KFP_REPOSITORY COMMIT_SHA
    mlops publish --config "$CONFIG" --host "$KFP_HOST" --template "$OUT"/compiled/*.json \
      --tag "$COMMIT_TAG" --tag latest --output-json "$OUT/published.json"
    ;;
  run-training)
    only main
    [ "${RUN_TRAINING:-false}" = true ] || { echo "step $STEP: skipped (_RUN_TRAINING is not true)" && exit 0; }
    need PROJECT_ID PIPELINE_ROOT
    mlops submit --config "$CONFIG" --pipeline training \
      --template "$(template_uri "$OUT/published.json" training)" \
      --project "$PROJECT_ID" --region "$REGION" --pipeline-root "$PIPELINE_ROOT" \
      ${SERVICE_ACCOUNT:+--service-account "$SERVICE_ACCOUNT"}
    ;;
  promote)
    # The version main uploaded for this commit gets the release's tags.
    only release
    need PROJECT_ID KFP_REPOSITORY COMMIT_SHA TAG_NAME
    # shellcheck disable=SC2046
    mlops publish --config "$CONFIG" --host "$KFP_HOST" --promote "$COMMIT_TAG" $(pipeline_flags) \
      --tag "$TAG_NAME" --tag release --output-json "$OUT/released.json"
    ;;
  schedule)
    only release
    need PROJECT_ID PIPELINE_ROOT TRAINING_CRON MONITORING_CRON
    training=$(template_uri "$OUT/released.json" training)
    monitoring=$(template_uri "$OUT/released.json" monitoring)
    where=(--config "$CONFIG" --project "$PROJECT_ID" --region "$REGION" --pipeline-root "$PIPELINE_ROOT")
    [ -z "${SERVICE_ACCOUNT:-}" ] || where+=(--service-account "$SERVICE_ACCOUNT")
    mlops schedule "${where[@]}" --pipeline training --cron "$TRAINING_CRON" --template "$training"
    mlops schedule "${where[@]}" --pipeline monitoring --cron "$MONITORING_CRON" \
      --template "$monitoring" --param "training_template_uri=$training"
    ;;
  *)
    echo "unknown step '$STEP'" >&2
    exit 2
    ;;
esac
