# Shell pieces the bench scripts share. Source it after defining `log`/`die`.

# bash runs a trap only after the foreground command ends, so long commands run
# through fg (background + wait, which a signal interrupts) and die with us.
child=
trap '[ -z "$child" ] || kill -TERM "$child" 2>/dev/null; exit 130' INT TERM
fg() {
    local rc=0
    "$@" &
    child=$!
    wait "$child" || rc=$?
    child=
    return $rc
}
# fg_in FILE CMD...: fg with stdin from FILE (an async command's stdin is
# otherwise /dev/null in a script).
fg_in() {
    local rc=0 in=$1
    shift
    "$@" <"$in" &
    child=$!
    wait "$child" || rc=$?
    child=
    return $rc
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Server CPU time so far, in clock ticks: utime + stime of PID, all threads
# (fields 14, 15 of /proc/PID/stat, counted after the ")" closing the command
# name).
cpu_ticks() {
    local s
    s=$(<"/proc/$1/stat")
    s=${s##*) }
    set -- $s
    echo $((${12} + ${13}))
}
