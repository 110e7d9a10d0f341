#!/usr/bin/env bash
# Stand-in for keel, to test bench/run.sh before keel exists:
#   KEEL_BIN=bench/redis-as-keel.sh bench/run.sh
# Takes keel's flags, drops the keel-only ones (--shards, --config) and execs
# redis-server, so the PID run.sh measures is the server's own.
args=()
while [ $# -gt 0 ]; do
    case $1 in
        --shards | --config) shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
exec redis-server --save '' "${args[@]}"
