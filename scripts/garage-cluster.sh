#!/usr/bin/env bash
# scripts/garage-cluster.sh — a throw-away three-node Garage cluster on 127.0.0.1.
#
#   scripts/garage-cluster.sh start DIR [BUCKET]   start it in DIR (created; must not hold a running cluster)
#   scripts/garage-cluster.sh stop DIR             stop every node started in DIR (SIGTERM, SIGKILL after 10 s)
#   scripts/garage-cluster.sh env DIR              print the variables again
#   scripts/garage-cluster.sh metrics DIR          node 0's Prometheus metrics (its S3 API is the one clients use)
#
# `start` writes one garage.toml per node under DIR/node{0,1,2} (SQLite metadata,
# replication_factor 3, no fsync, a generated rpc_secret and admin token, S3 region `garage`,
# free loopback ports), starts the three servers in their own session, connects them,
# gives each a role in its own zone (`garage layout assign` / `layout apply`), waits for
# three healthy nodes, creates BUCKET (default strata-bench) and a key with read, write and
# owner rights on it. The configuration and the steps are those of the Rust tests' harness,
# tests/common/garage.rs. It then prints, and writes to DIR/env, lines to `source` or `eval`:
#
#   export AWS_ACCESS_KEY_ID=GK…  AWS_SECRET_ACCESS_KEY=…  AWS_DEFAULT_REGION=garage
#   export S3_ENDPOINT=http://127.0.0.1:PORT  S3_BUCKET=strata-bench
#
# If `start` fails half-way it stops the nodes it started. A caller that starts a cluster
# should run `stop DIR` from its EXIT trap; `stop` is safe to run twice or on a DIR whose
# start failed, and only signals processes that are `garage` servers of DIR's configs.
#
# The binary is $STRATA_GARAGE, else `garage` on PATH, else ~/.cargo/bin/garage (2.x; install
# it with `cargo install --locked garage --version 2.5.0`).

set -euo pipefail
shopt -s inherit_errexit

NODES=3
REGION=garage
READY_S=60

gc_die() { printf 'garage-cluster.sh: %s\n' "$*" >&2; exit 1; }

gc_usage() {
    sed -n 's/^#   \(scripts\/garage-cluster\.sh .*\)/  \1/p' "$0"
}

garage_bin() {
    local b
    for b in "${STRATA_GARAGE:-}" "$(command -v garage 2>/dev/null || true)" "$HOME/.cargo/bin/garage"; do
        [[ -n $b && -x $b ]] || continue
        "$b" --version 2>/dev/null | grep -q ':2\.' ||
            gc_die "$b is not Garage 2.x ($("$b" --version 2>&1 | head -n 1)); install it with: cargo install --locked garage --version 2.5.0"
        echo "$b"
        return
    done
    gc_die "no garage binary (\$STRATA_GARAGE, PATH, ~/.cargo/bin); install it with: cargo install --locked garage --version 2.5.0 (about 14 minutes on two cores)"
}

# free_ports N: N distinct free loopback ports (bound at once, then released).
free_ports() {
    if command -v python3 >/dev/null && python3 -c 'import socket' 2>/dev/null; then
        python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
    else
        # No python: random ports that nothing listens on now.
        local used ports=() p
        used=" $(ss -Htan 2>/dev/null | awk '{ n = split($4, a, ":"); printf "%s ", a[n] }') "
        while ((${#ports[@]} < $1)); do
            p=$((20000 + RANDOM % 40000))
            [[ $used == *" $p "* || " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
        done
        echo "${ports[*]}"
    fi
}

# `env "${NO_GARAGE_ENV[@]}" CMD...` runs CMD with no GARAGE_* variable in its environment
# (Garage reads some, such as GARAGE_RPC_SECRET, as overrides of its configuration).
NO_GARAGE_ENV=()
for v in $(compgen -e); do [[ $v == GARAGE_* ]] && NO_GARAGE_ENV+=(-u "$v"); done
unset v

random_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

# gcli I ARGS...: `garage -c DIR/nodeI/garage.toml ARGS`, bounded in time, stdout on success;
# on failure everything it said goes to stderr.
gcli() {
    local i=$1 out
    shift
    if ! out=$(env "${NO_GARAGE_ENV[@]}" RUST_LOG=warn timeout 60 "$GARAGE" -c "$DIR/node$i/garage.toml" "$@" 2>&1 </dev/null); then
        printf 'garage-cluster.sh: "garage -c %s %s" failed:\n%s\n' "$DIR/node$i/garage.toml" "$*" "$out" >&2
        return 1
    fi
    printf '%s\n' "$out"
}

write_config() { # write_config I RPC S3 ADMIN PEERS
    local nd=$DIR/node$1
    (
        umask 077
        cat >"$nd/garage.toml" <<EOF
metadata_dir = "$nd/meta"
data_dir = "$nd/data"
db_engine = "sqlite"
replication_factor = 3
metadata_fsync = false
data_fsync = false
rpc_bind_addr = "127.0.0.1:$2"
rpc_public_addr = "127.0.0.1:$2"
rpc_secret = "$RPC_SECRET"
bootstrap_peers = [$5]

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$3"

[admin]
api_bind_addr = "127.0.0.1:$4"
admin_token = "$ADMIN_TOKEN"
EOF
    )
    echo "$2 $3 $4" >"$nd/ports"
}

# Is PID a garage server of DIR's node I?
is_our_node() {
    local pid=$1 i=$2 cmd
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    [[ $cmd == *garage*" -c $DIR/node$i/garage.toml server"* ]]
}

stop_nodes() {
    local i pid pids=() pi alive
    for ((i = 0; i < NODES; i++)); do
        pid=$(cat "$DIR/node$i/pid" 2>/dev/null || true)
        if is_our_node "$pid" "$i"; then
            kill -TERM "$pid" 2>/dev/null || true
            kill -CONT "$pid" 2>/dev/null || true
            pids+=("$pid:$i")
        fi
        rm -f "$DIR/node$i/pid"
    done
    for ((i = 0; i < 100; i++)); do
        alive=0
        for pi in "${pids[@]}"; do is_our_node "${pi%%:*}" "${pi##*:}" && alive=1; done
        ((alive)) || return 0
        sleep 0.1
    done
    for pi in "${pids[@]}"; do
        if is_our_node "${pi%%:*}" "${pi##*:}"; then
            echo "garage-cluster.sh: node ${pi##*:} (pid ${pi%%:*}) did not stop within 10 s; killing it" >&2
            kill -KILL "${pi%%:*}" 2>/dev/null || true
        fi
    done
}

tails() {
    local i
    for ((i = 0; i < NODES; i++)); do
        echo "--- node $i ($DIR/node$i/garage.log) ---"
        tail -n 15 "$DIR/node$i/garage.log" 2>/dev/null || true
    done
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_listening() { # wait_listening I
    local i=$1 rpc s3 pid t
    read -r rpc s3 _ <"$DIR/node$i/ports"
    pid=$(cat "$DIR/node$i/pid")
    for ((t = 0; t < READY_S * 20; t++)); do
        is_our_node "$pid" "$i" || { tails >&2; gc_die "node $i exited while starting"; }
        if listening "$s3" && listening "$rpc" && [[ -e $DIR/node$i/meta/node_key.pub ]]; then
            return 0
        fi
        sleep 0.05
    done
    tails >&2
    gc_die "node $i did not listen within $READY_S s"
}

healthy_nodes() { # the rows of the HEALTHY NODES table of `garage status`
    awk '/HEALTHY NODES/ { t = 1; getline; next } t && (/^ *$/ || /^====/) { exit } t { n++ } END { print n + 0 }'
}

start_failed() {
    local rc=$?
    ((rc == 0)) || stop_nodes
    exit "$rc"
}

start() {
    local bucket=${1:-strata-bench} i ports p
    [[ $bucket =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || gc_die "bad bucket name $bucket"
    GARAGE=$(garage_bin)
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd -P)
    for ((i = 0; i < NODES; i++)); do
        if is_our_node "$(cat "$DIR/node$i/pid" 2>/dev/null || true)" "$i"; then
            gc_die "a cluster is already running in $DIR (stop it first: $0 stop $DIR)"
        fi
    done
    rm -rf "${DIR:?}"/node? "$DIR/env"
    trap start_failed EXIT
    RPC_SECRET=$(random_hex 32)
    ADMIN_TOKEN=$(random_hex 24)
    read -r -a ports <<<"$(free_ports $((NODES * 3)))"
    ((${#ports[@]} == NODES * 3)) || gc_die "could not find $((NODES * 3)) free ports"
    for ((i = 0; i < NODES; i++)); do
        mkdir -p "$DIR/node$i/meta" "$DIR/node$i/data"
        write_config "$i" "${ports[3 * i]}" "${ports[3 * i + 1]}" "${ports[3 * i + 2]}" ""
    done
    for ((i = 0; i < NODES; i++)); do
        # Own session: a Ctrl-C at the caller's terminal must not take the nodes down
        # before the caller's cleanup has unmounted what reads from them.
        env "${NO_GARAGE_ENV[@]}" RUST_LOG=garage=info,garage_api_s3=warn setsid "$GARAGE" -c "$DIR/node$i/garage.toml" server \
            </dev/null >>"$DIR/node$i/garage.log" 2>&1 &
        echo $! >"$DIR/node$i/pid"
    done
    local ids=() peers=""
    for ((i = 0; i < NODES; i++)); do
        wait_listening "$i"
        ids+=("$(gcli "$i" node id -q | tail -n 1 | tr -d '[:space:]')")
        [[ ${ids[i]} == *@127.0.0.1:* ]] || gc_die "node $i: unexpected node id '${ids[i]}'"
    done
    # Each node finds the others by itself if it is restarted.
    for p in "${ids[@]}"; do peers+="${peers:+, }\"$p\""; done
    for ((i = 0; i < NODES; i++)); do
        read -r -a np <"$DIR/node$i/ports"
        write_config "$i" "${np[0]}" "${np[1]}" "${np[2]}" "$peers"
    done
    for ((i = 1; i < NODES; i++)); do gcli 0 node connect "${ids[i]}" >/dev/null; done
    for ((i = 0; i < NODES; i++)); do
        gcli 0 layout assign -z "z$((i + 1))" -c 10G "${ids[i]:0:16}" >/dev/null
    done
    gcli 0 layout apply --version 1 >/dev/null
    local t n=0 st=""
    for ((t = 0; t < READY_S * 5; t++)); do
        st=$(gcli 0 status 2>&1 || true)
        n=$(healthy_nodes <<<"$st")
        ((n >= NODES)) && break
        sleep 0.2
    done
    ((n >= NODES)) || { printf '%s\n' "$st" >&2; tails >&2; gc_die "the cluster did not report $NODES healthy nodes within $READY_S s"; }
    # The new layout reaches every node in a moment: retry until the bucket is made.
    for ((t = 0; ; t++)); do
        gcli 0 bucket create "$bucket" >/dev/null 2>"$DIR/bucket-create.err" && break
        ((t < READY_S * 5)) || { cat "$DIR/bucket-create.err" >&2; gc_die "could not create bucket $bucket"; }
        sleep 0.2
    done
    rm -f "$DIR/bucket-create.err"
    local key key_id secret s3
    key=$(gcli 0 key create "$bucket-key")
    key_id=$(awk -F': *' '/^ *Key ID:/ { print $2; exit }' <<<"$key" | tr -d '[:space:]')
    secret=$(awk -F': *' '/^ *Secret key:/ { print $2; exit }' <<<"$key" | tr -d '[:space:]')
    [[ -n $key_id && -n $secret ]] || { printf '%s\n' "$key" >&2; gc_die "no key id or secret in the output of garage key create"; }
    gcli 0 bucket allow --read --write --owner "$bucket" --key "$key_id" >/dev/null
    read -r _ s3 _ <"$DIR/node0/ports"
    (
        umask 077
        cat >"$DIR/env" <<EOF
export AWS_ACCESS_KEY_ID=$key_id
export AWS_SECRET_ACCESS_KEY=$secret
export AWS_DEFAULT_REGION=$REGION
export S3_ENDPOINT=http://127.0.0.1:$s3
export S3_BUCKET=$bucket
EOF
    )
    trap - EXIT
    cat "$DIR/env"
}

(($# >= 1)) || { gc_usage >&2; exit 2; }
cmd=$1
shift
case $cmd in
    start | stop | env | metrics)
        (($# >= 1)) || { gc_usage >&2; exit 2; }
        DIR=$1
        shift
        ;;
    -h | --help) gc_usage; exit 0 ;;
    *) gc_usage >&2; exit 2 ;;
esac
case $cmd in
    start) (($# <= 1)) || { gc_usage >&2; exit 2; }; start "$@" ;;
    stop)
        [[ -d $DIR ]] || exit 0
        DIR=$(cd "$DIR" && pwd -P)
        stop_nodes
        ;;
    env)
        [[ -f $DIR/env ]] || gc_die "no cluster was started in $DIR"
        cat "$DIR/env"
        ;;
    metrics)
        [[ -f $DIR/node0/ports && -f $DIR/node0/garage.toml ]] || gc_die "no cluster was started in $DIR"
        read -r _ _ admin <"$DIR/node0/ports"
        token=$(sed -n 's/^admin_token = "\(.*\)"$/\1/p' "$DIR/node0/garage.toml")
        # The token goes through a header file, not the command line.
        curl -sS -f -H @- "http://127.0.0.1:$admin/metrics" <<<"Authorization: Bearer $token" ||
            gc_die "could not read the metrics of node 0 (admin API on port $admin)"
        ;;
esac
