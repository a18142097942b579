# unit.sh — a 3-replica unit under load survives kill -9 of its primary and
# of two backups, one restarted with a damaged journal slot; see
# tests/integration/unit.c.
set -eu
"${PWD}/build/itests/unit" "${PWD}/build/paycell"
