#!/usr/bin/env bash
# The streamscore image's entrypoint (also /docker-entrypoint.sh, where Flink's Kubernetes integration looks).
#   jobmanager | taskmanager   a session cluster's JVM in the foreground (docker-compose.yml), with the
#                              configuration `python -m pipelines.infra.container` writes (the local cluster's,
#                              for containers)
#   kubernetes-*.sh ARGS       what the Flink Kubernetes Operator starts: Flink's own script, the configuration
#                              is the operator's (mounted in $FLINK_HOME/conf from the FlinkDeployment)
#   anything else              run as a command (e.g. `streamscore run risk --target remote ...`)
# Either way flink-python sits in the JVM's lib folder (PyFlink's operators, loaded once per TaskManager).
set -euo pipefail
role="${1:-}"
case "$role" in
  jobmanager|taskmanager)
    eval "$(python -m pipelines.infra.container "$role")"
    exec bash "$FLINK_HOME/bin/$role.sh" start-foreground
    ;;
  kubernetes-jobmanager.sh|kubernetes-taskmanager.sh)
    export FLINK_HOME=/opt/flink
    FLINK_LIB_DIR="$(python -c 'from pipelines.infra.cluster import cluster_lib; print(cluster_lib())')"
    export FLINK_LIB_DIR
    shift
    exec bash "$FLINK_HOME/bin/$role" "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
