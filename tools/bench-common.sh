# Shared by the benchmark scripts (sourced): a private directory removed on
# exit with every process listed in pids, a cluster secret for the test
# daemons, and num KEY to read a number out of a JSON line.
#   bench_setup NAME
bench_setup() {
    dir=$(mktemp -d "/tmp/mcefa-$1-XXXXXX")
    pids=()
    trap bench_cleanup EXIT
    # The daemons authenticate each other with one secret, as in production.
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/peer.secret"
    chmod 600 "$dir/peer.secret"
    export MCEFAD_PEER_SECRET_FILE="$dir/peer.secret"
}

bench_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}

num() { sed -n 's/.*"'"$1"'":\([0-9.]*\).*/\1/p'; }

# median V...: the middle value (the mean of the two middle ones for an
# even count).
median() {
    printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{if (NR%2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2}'
}
