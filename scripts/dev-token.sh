#!/usr/bin/env bash
# Prints an HS256 JWT for trying Ferrocast out: scripts/dev-token.sh SUB [ROOMS] [PUB] [SECRET]
#   SUB     user id (the token's sub)
#   ROOMS   comma-separated room patterns the user may join (default: none)
#   PUB     comma-separated room patterns the user may publish to (default: none)
#   SECRET  HS256 secret (default: the edge's development secret)
# Valid for one hour. For development only: production tokens come from your own auth service.
set -euo pipefail
sub=${1:?usage: dev-token.sh SUB [ROOMS] [PUB] [SECRET]}
rooms=${2:-}
pub=${3:-}
secret=${4:-ferrocast-dev-secret}

json_list() {
  local out="" item
  IFS=',' read -ra items <<<"$1"
  for item in "${items[@]}"; do
    [ -n "$item" ] && out="$out${out:+,}\"$item\""
  done
  printf '[%s]' "$out"
}
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

exp=$(($(date +%s) + 3600))
header=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
payload=$(printf '{"sub":"%s","exp":%s,"rooms":%s,"pub":%s}' "$sub" "$exp" "$(json_list "$rooms")" "$(json_list "$pub")" | b64url)
signature=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -hmac "$secret" -binary | b64url)
printf '%s.%s.%s\n' "$header" "$payload" "$signature"
