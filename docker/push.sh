#!/usr/bin/env bash
# Push a local image to Amazon ECR with the AWS CLI: create the repository when it does not exist,
# log Docker in, tag, push. Prints the image URI to give SageMaker (Estimator(image_uri=...)).
#
#   docker/push.sh LOCAL_IMAGE [REPOSITORY [TAG]]     (default repository sagedet, tag: LOCAL_IMAGE's)
#
# Account: AWS_ACCOUNT_ID, else the caller's (aws sts get-caller-identity). Region: AWS_REGION,
# else AWS_DEFAULT_REGION, else the AWS CLI's configuration (aws configure get region).
set -euo pipefail

local_image="${1:?usage: docker/push.sh LOCAL_IMAGE [REPOSITORY [TAG]]}"
repository="${2:-sagedet}"
tag="${3:-${local_image##*:}}"
[ "$tag" != "$local_image" ] || tag=latest

log() { echo "docker/push.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v aws >/dev/null 2>&1 || die "no aws command: install the AWS CLI (pip install awscli, or AWS's installer) and configure credentials"
command -v docker >/dev/null 2>&1 || die "no docker command: run docker/engine.sh (make docker-engine)"
docker image inspect "$local_image" >/dev/null 2>&1 || die "no local image $local_image: build it first (make build-cpu / build-gpu)"

region="${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region 2>/dev/null || true)}}"
[ -n "$region" ] || die "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or aws configure set region ...)"
account="${AWS_ACCOUNT_ID:-$(aws sts get-caller-identity --query Account --output text 2>/dev/null || true)}"
[ -n "$account" ] && [ "$account" != None ] || die "no AWS account: set AWS_ACCOUNT_ID, or configure credentials for aws sts get-caller-identity"

registry="$account.dkr.ecr.$region.amazonaws.com"
remote="$registry/$repository:$tag"

if ! aws ecr describe-repositories --region "$region" --repository-names "$repository" >/dev/null 2>&1; then
    log "creating the ECR repository $repository in $region"
    aws ecr create-repository --region "$region" --repository-name "$repository" >/dev/null \
        || die "aws ecr create-repository $repository failed"
fi
log "logging Docker in to $registry"
aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry" >/dev/null \
    || die "docker login to $registry failed"
docker tag "$local_image" "$remote"
log "pushing $remote"
docker push "$remote"
echo "$remote"
