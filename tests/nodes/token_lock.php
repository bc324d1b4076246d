<?php
// A PHP process taking turns in a critical section with Python processes, without
// a semaphore: PHP's sem_get cannot open a plain SysV semaphore, so the lock is one
// token message in a queue. msg_receive takes the token (waiting while someone else
// holds it), msg_send gives it back. Times are CLOCK_MONOTONIC nanoseconds (hrtime),
// the clock Python's time.monotonic_ns() reads.
$queue = msg_get_queue((int) getenv('TOPO_IPC_TOKEN_KEY'));
$me = getenv('TOPO_NODE') . '.' . getenv('TOPO_REPLICA');
for ($k = 1; $k <= 5; $k++) {
    if (!msg_receive($queue, 1, $type, 64, $token, false, 0, $error)) {
        fwrite(STDERR, "msg_receive failed ($error)\n");
        exit(1);
    }
    $enter = hrtime(true);
    usleep(2000);
    $leave = hrtime(true);
    msg_send($queue, 1, $token, false);
    echo "$me inside from $enter to $leave\n";
}
