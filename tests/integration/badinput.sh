# badinput.sh — hostile frames against a live replica; see badinput.c.
set -eu
"${PWD}/build/itests/badinput" "${PAYCELL:-${PWD}/build/paycell}"
